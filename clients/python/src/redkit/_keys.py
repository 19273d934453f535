"""Keys and tags made from a decorated function's arguments: templates (``"user:{id}"``)
filled from the bound arguments with defaults applied, callables, or a default key of the
function's qualified name and its arguments' ``repr`` (without ``self``/``cls``; hashed when
over 200 bytes), so equal calls map to equal keys."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

KeySpec = Union[str, Callable[..., str], None]
TagsSpec = Union[Sequence[str], Callable[..., Sequence[str]], None]

_MAX_KEY = 200


class Binder:
    """Renders key templates (``"user:{user_id}"``) and callables against a call's arguments."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self._sig = inspect.signature(func)
        self._name = f"{func.__module__}.{func.__qualname__}"
        params = list(self._sig.parameters)
        self._skip_first = bool(params) and params[0] in ("self", "cls")

    def arguments(self, args: Sequence[Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
        bound = self._sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return dict(bound.arguments)

    def default_key(self, arguments: Dict[str, Any]) -> str:
        values = list(arguments.values())
        if self._skip_first:
            values = values[1:]
        key = f"{self._name}({', '.join(repr(v) for v in values)})"
        if len(key.encode()) > _MAX_KEY:
            key = f"{self._name}#" + hashlib.sha256(key.encode()).hexdigest()
        return key

    def key(self, spec: KeySpec, args: Sequence[Any], kwargs: Dict[str, Any]) -> str:
        if callable(spec):
            return str(spec(*args, **kwargs))
        arguments = self.arguments(args, kwargs)
        if spec is None:
            return self.default_key(arguments)
        return spec.format(**arguments)

    def keys(
        self, specs: Optional[Sequence[Union[str, Callable[..., Any]]]], args: Sequence[Any], kwargs: Dict[str, Any]
    ) -> List[str]:
        if not specs:
            return []
        out: List[str] = []
        arguments: Optional[Dict[str, Any]] = None
        for spec in specs:
            if callable(spec):
                produced = spec(*args, **kwargs)
                if isinstance(produced, str):
                    out.append(produced)
                else:
                    out.extend(str(p) for p in produced)
            else:
                if arguments is None:
                    arguments = self.arguments(args, kwargs)
                out.append(spec.format(**arguments))
        return out

    def tags(self, spec: TagsSpec, args: Sequence[Any], kwargs: Dict[str, Any]) -> Optional[List[str]]:
        if spec is None:
            return None
        if callable(spec):
            return [str(t) for t in spec(*args, **kwargs)]
        return self.keys(list(spec), args, kwargs)


def as_list(value: Union[str, Sequence[Any], None]) -> Optional[List[Any]]:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)
