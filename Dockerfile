FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home --uid 1000 proxy && mkdir -p /app/var && chown proxy /app/var
USER proxy
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "llmproxy.asgi:application"]
