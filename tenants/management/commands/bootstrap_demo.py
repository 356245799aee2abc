import os

from llmproxy.management import ProxyCommand
from tenants.services import DEMO_MODEL, DEMO_TENANT, demo_bootstrap


class Command(ProxyCommand):
    help = (
        "Create the demo set-up used by `make run`, unless it exists: tenant demo, a shared mock "
        "provider named mock, a shared route demo-model -> mock-1 and an API key named demo. The key "
        "is printed only when it is created."
    )

    def handle(self, *args, **options):
        created, api_key, plain = demo_bootstrap(actor=self.audit_actor)
        for what in created:
            self.stdout.write(f"created {what}")
        if plain is None:
            self.stdout.write(
                f"The demo API key ({api_key.prefix}) exists; its secret was shown only when it was created."
            )
            self.stdout.write(f"Make another with: python manage.py create_api_key --tenant {DEMO_TENANT}")
            return
        port = os.environ.get("PORT", "").strip() or "8000"
        self.stdout.write("")
        self.stdout.write("Demo API key (shown only once; store it now):")
        self.stdout.write(f"prefix: {api_key.prefix}")
        self.stdout.write(plain)
        self.stdout.write("")
        self.stdout.write("Try it:")
        self.stdout.write(f"  curl http://127.0.0.1:{port}/v1/chat/completions \\")
        self.stdout.write(f'    -H "Authorization: Bearer {plain}" \\')
        self.stdout.write('    -H "Content-Type: application/json" \\')
        self.stdout.write(
            f"""    -d '{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "Hello!"}}]}}'"""
        )
