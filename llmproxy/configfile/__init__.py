"""Configuration as code: the YAML file of apply_config and export_config.

schema (what the file may say) -> parse (YAML to checked entries, with lines)
-> resolve (references, against the file and the database) -> diff (the
changes) -> apply (one transaction, audited); export writes the file back.
"""
