"""GET /v1/models and /v1/models/{id}: exactly the models this key may use."""

import orjson

from llmproxy.gateway.errors import GatewayError
from llmproxy.gateway.proxy import AuthenticatedConsumer
from providers import routing_table


def _model_object(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "llmproxy"}


class ModelsConsumer(AuthenticatedConsumer):
    methods = ("GET",)

    async def usable_models(self, key) -> list[str]:
        table = await routing_table.table_for(key.tenant.id)
        return sorted(model for model in table if key.allows_model(model))

    async def handle(self, body):
        key = await self.authenticate()
        models = await self.usable_models(key)
        payload = {"object": "list", "data": [_model_object(m) for m in models]}
        await self.send_json(200, orjson.dumps(payload))


class ModelDetailConsumer(ModelsConsumer):
    async def handle(self, body):
        key = await self.authenticate()
        model_id = self.scope["url_route"]["kwargs"]["model_id"]
        if key.allows_model(model_id) and await routing_table.routes_for(key.tenant.id, model_id):
            await self.send_json(200, orjson.dumps(_model_object(model_id)))
            return
        raise GatewayError(
            404,
            f"The model '{model_id}' does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )
