"""Points to request bodies: JSON fragments packed into batches that stay
under the server's point count (``vector_db.max_batch``) and body size
(``node.max_body_size``) limits.

numpy arrays take a fast path: rows are converted to little-endian
float32 (what the server stores) and sent in the server's compact form, a
string of their base64: no float formatting here, no float parsing on the
node, and a third the size of the numbers.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from .models import Point

_PREFIX = b'{"points":['
_SUFFIX = b"]}"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is optional
        return None
    return numpy


def check_id(pid: Any) -> Any:
    np = _numpy()
    if np is not None and isinstance(pid, np.integer):
        pid = int(pid)
    if isinstance(pid, bool) or not isinstance(pid, (str, int)):
        raise TypeError(f"point id {pid!r}: a string or an unsigned integer")
    if isinstance(pid, int) and pid < 0:
        raise ValueError(f"point id {pid}: integers must be >= 0")
    if isinstance(pid, str) and not pid:
        raise ValueError("point id: an empty string")
    return pid


def vector_json(v: Any) -> str:
    """One vector as JSON: a numpy array by the fast path, else a list of floats."""
    np = _numpy()
    if np is not None and isinstance(v, np.ndarray):
        if v.ndim != 1:
            raise ValueError(f"a vector has one dimension, this array has {v.ndim}")
        row = v.astype("<f4", copy=False)
        if not np.isfinite(row).all():
            raise ValueError("a vector has a NaN or infinite component")
        return '"' + base64.b64encode(row.tobytes()).decode("ascii") + '"'
    try:
        return json.dumps([float(x) for x in v], allow_nan=False)
    except ValueError as e:
        raise ValueError(f"a vector has a NaN or infinite component: {e}") from None


def vector_list(v: Any) -> List[float]:
    """A query vector as a plain list."""
    np = _numpy()
    if np is not None and isinstance(v, np.ndarray):
        return [float(x) for x in v.astype(np.float32, copy=False).tolist()]
    return [float(x) for x in v]


def fragment(pid: Any, vector: Any = None, text: Optional[str] = None, metadata: Any = None) -> bytes:
    parts = ['"id":' + json.dumps(check_id(pid))]
    if vector is not None:
        parts.append('"vector":' + vector_json(vector))
    if text is not None:
        parts.append('"text":' + json.dumps(text))
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"point {pid!r}: metadata must be a mapping")
        parts.append('"metadata":' + json.dumps(metadata, separators=(",", ":"), allow_nan=False))
    return ("{" + ",".join(parts) + "}").encode()


def _from_point(p: Any) -> bytes:
    if isinstance(p, Point):
        return fragment(p.id, p.vector, p.text, p.metadata)
    if isinstance(p, Mapping):
        unknown = set(p) - {"id", "vector", "text", "metadata"}
        if unknown:
            raise ValueError(f"point {p.get('id')!r}: unknown fields {sorted(unknown)}")
        if "id" not in p:
            raise ValueError("a point needs an id")
        return fragment(p["id"], p.get("vector"), p.get("text"), p.get("metadata"))
    raise TypeError(f"a point is a mapping or a Point, not {type(p).__name__}")


def fragments(
    points: Optional[Iterable[Any]],
    ids: Optional[Iterable[Any]],
    vectors: Any,
    texts: Optional[Sequence[Optional[str]]],
    metadata: Optional[Sequence[Any]],
) -> Tuple[Iterator[bytes], Optional[int]]:
    """The points' JSON fragments, and how many there are (when known)."""
    if points is not None:
        if ids is not None or vectors is not None or texts is not None or metadata is not None:
            raise ValueError("give points, or ids with vectors/texts/metadata, not both")
        total = len(points) if hasattr(points, "__len__") else None  # type: ignore[arg-type]
        return (_from_point(p) for p in points), total
    if ids is None:
        raise ValueError("ids are required with vectors or texts")
    id_list = list(ids.tolist() if hasattr(ids, "tolist") else ids)
    n = len(id_list)
    np = _numpy()
    if vectors is not None:
        if np is not None and isinstance(vectors, np.ndarray):
            if vectors.ndim != 2:
                raise ValueError(f"vectors must be a 2-d array (points x dimension), not {vectors.ndim}-d")
            vectors = vectors.astype("<f4", copy=False)
            if not np.isfinite(vectors).all():
                raise ValueError("vectors hold a NaN or infinite component")
        if len(vectors) != n:
            raise ValueError(f"{n} ids but {len(vectors)} vectors")
    for name, seq in (("texts", texts), ("metadata", metadata)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{n} ids but {len(seq)} {name}")
    if vectors is None and texts is None:
        raise ValueError("give vectors or texts (or both) with ids")

    def gen() -> Iterator[bytes]:
        packed = np is not None and isinstance(vectors, np.ndarray)
        for i, pid in enumerate(id_list):
            parts = ['"id":' + json.dumps(check_id(pid))]
            if packed:
                parts.append('"vector":"' + base64.b64encode(vectors[i].tobytes()).decode("ascii") + '"')
            elif vectors is not None:
                parts.append('"vector":' + vector_json(vectors[i]))
            if texts is not None and texts[i] is not None:
                parts.append('"text":' + json.dumps(texts[i]))
            if metadata is not None and metadata[i] is not None:
                parts.append('"metadata":' + json.dumps(metadata[i], separators=(",", ":"), allow_nan=False))
            yield ("{" + ",".join(parts) + "}").encode()

    return gen(), n


def pack(frags: Iterable[bytes], max_points: int, max_bytes: int) -> Iterator[Tuple[bytes, int]]:
    """Bodies ``{"points": [...]}`` of at most ``max_points`` points and
    ``max_bytes`` bytes each, in order, with their point counts."""
    if max_points < 1:
        raise ValueError("batch_size must be at least 1")
    overhead = len(_PREFIX) + len(_SUFFIX)
    batch: List[bytes] = []
    size = overhead
    for f in frags:
        if overhead + len(f) > max_bytes:
            raise ValueError(
                f"one point is {len(f)} bytes of JSON, over the {max_bytes}-byte request limit (max_body_bytes)"
            )
        extra = len(f) + (1 if batch else 0)
        if batch and (len(batch) >= max_points or size + extra > max_bytes):
            yield _PREFIX + b",".join(batch) + _SUFFIX, len(batch)
            batch, size, extra = [], overhead, len(f)
        batch.append(f)
        size += extra
    if batch:
        yield _PREFIX + b",".join(batch) + _SUFFIX, len(batch)
