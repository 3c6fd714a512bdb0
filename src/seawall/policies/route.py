"""Route: public model name -> deployment -> upstream call. The innermost handler of the stack.

Checks that the model exists (404), that the key may use it (403) and that it serves this
operation (400), then calls the deployment's upstream edge.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from seawall.core.errors import InvalidRequest, ModelNotFound, PermissionDenied
from seawall.core.types import Operation, Request, Response

__all__ = ["Deployment", "ModelGroup", "Router"]

Send = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    send: Send


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str
    operation: Operation
    deployments: Sequence[Deployment]


class Router:
    def __init__(self, groups: dict[str, ModelGroup]) -> None:
        self.groups = groups

    def resolve(self, request: Request) -> ModelGroup:
        model = request.payload.model
        group = self.groups.get(model)
        if group is None:
            raise ModelNotFound(f"The model '{model}' does not exist.", param="model")
        if not request.principal.may_use(model):
            raise PermissionDenied(f"This key may not use the model '{model}'.", param="model")
        if group.operation is not request.operation:
            raise InvalidRequest(
                f"The model '{model}' serves {group.operation.value}, not {request.operation.value}.",
                param="model", code="wrong_model_kind",
            )
        return group

    async def __call__(self, request: Request) -> Response:
        group = self.resolve(request)
        deployment = group.deployments[0]
        request.ctx.deployments_tried.append(deployment.name)
        request.ctx.attempts += 1
        return await deployment.send(request)
