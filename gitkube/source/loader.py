"""Which objects a set of manifest files defines, with every problem located as `file:line: field`."""
from __future__ import annotations

import gc
import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gitkube.api import KINDS, NAMESPACED, ObjectInvalid, format_path, parse_object, to_k8s
from gitkube.api.content import authored_content, content_hash
from gitkube.api.errors import Problem

try:  # libyaml's composer is ~10x faster; construction stays ours so both behave the same
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader

DEFAULT_MAX_BYTES = 1 << 20
# How many nodes aliases may add by re-use. A legitimate manifest re-uses a few blocks; a "billion
# laughs" document needs millions.
DEFAULT_MAX_ALIAS_NODES = 10_000
# How deep mappings and sequences may nest, in YAML and JSON alike. Real manifests nest about 10 deep; the
# builders recurse per level, so without a bound a deep document ends in a RecursionError instead of a problem.
MAX_NESTING_DEPTH = 100

Loc = tuple[str | int, ...]

_TAG = "tag:yaml.org,2002:"
_STR, _MAP, _SEQ, _MERGE = _TAG + "str", _TAG + "map", _TAG + "seq", _TAG + "merge"
_SCALAR_TAGS = {_TAG + t for t in ("null", "bool", "int", "float", "str", "timestamp")}


_RESOLVED: dict[tuple[Any, Any, Any], str] = {}
_PLAIN_INT = re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$")
_PLAIN_FLOAT = re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_BOOLS = {"yes": True, "true": True, "on": True, "no": False, "false": False, "off": False}


class _ManifestLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """A safe loader whose nodes keep their marks; only YAML's plain tags are accepted (checked by _Builder)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        # Manifests repeat the same keys and values thousands of times; resolving each by regex
        # dominated load time, so resolutions are memoised (the result depends only on the arguments).
        key = (kind, value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = super().resolve(kind, value, implicit)
            if len(_RESOLVED) > 100_000:
                _RESOLVED.clear()
            _RESOLVED[key] = tag
        return tag


def _scalar(loader: Any, node: ScalarNode) -> Any:
    """Gives a scalar's value by YAML 1.1 rules, with fast paths for the common spellings."""
    tag, value = node.tag, node.value
    if tag == _TAG + "int" and _PLAIN_INT.match(value):
        return int(value)
    if tag == _TAG + "bool":
        return _BOOLS[value.lower()]
    if tag == _TAG + "null":
        return None
    if tag == _TAG + "float" and _PLAIN_FLOAT.match(value):
        return float(value)
    return loader.yaml_constructors[tag](loader, node)  # 0x.., 0o.., 1_000, .inf, sexagesimal


class _LoadError(Exception):
    def __init__(self, line: int, message: str, loc: Loc = ()):
        super().__init__(message)
        self.line, self.message, self.loc = line, message, loc


class _Builder:
    """Turns a composed node tree into plain data, refusing unknown tags, duplicate keys and alias bombs."""

    def __init__(self, loader: Any, max_alias_nodes: int):
        self.loader = loader
        self.max_alias_nodes = max_alias_nodes
        self.alias_nodes = 0
        self.done: dict[int, tuple[Any, int]] = {}
        self.active: set[int] = set()
        self.depth = 0

    def build(self, node: Node, loc: Loc = ()) -> Any:
        value, _ = self._build(node, loc, node.start_mark.line + 1)
        return value

    def _build(self, node: Node, loc: Loc, at_line: int) -> tuple[Any, int]:
        # `at_line` is where this node is referenced: an alias yields the anchored node itself, so
        # the node's own mark would name the anchor rather than the alias that crossed the limit.
        key = id(node)
        seen = self.done.get(key)
        if seen is not None:
            # A second visit is an alias: it costs the whole subtree again once expanded by a consumer.
            self.alias_nodes += seen[1]
            if self.alias_nodes > self.max_alias_nodes:
                raise _LoadError(at_line,
                                 f"aliases expand to more than {self.max_alias_nodes} nodes (a YAML bomb?)", loc)
            return seen
        if key in self.active:
            raise _LoadError(at_line, "recursive alias", loc)
        tag = node.tag
        if isinstance(node, ScalarNode):
            if tag not in _SCALAR_TAGS:
                raise _LoadError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}", loc)
            if tag == _STR or tag == _TAG + "timestamp":
                # Timestamps stay the text written, as Kubernetes' YAML-to-JSON conversion keeps them.
                result: tuple[Any, int] = (node.value, 1)
            else:
                result = (_scalar(self.loader, node), 1)
            self.done[key] = result
            return result
        if self.depth >= MAX_NESTING_DEPTH:
            raise _LoadError(node.start_mark.line + 1, f"nested more than {MAX_NESTING_DEPTH} levels deep")
        self.active.add(key)
        self.depth += 1
        try:
            if isinstance(node, SequenceNode):
                if tag != _SEQ:
                    raise _LoadError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}", loc)
                items, size = [], 1
                line = node.start_mark.line + 1
                for i, child in enumerate(node.value):
                    # An alias item is placed after its last fresh sibling (or at the sequence's start).
                    fresh = id(child) not in self.done
                    v, n = self._build(child, loc + (i,), child.start_mark.line + 1 if fresh else line)
                    if fresh:
                        line = child.end_mark.line + 1
                    items.append(v)
                    size += n
                result = (items, size)
            elif isinstance(node, MappingNode):
                if tag != _MAP:
                    raise _LoadError(node.start_mark.line + 1, f"unsupported YAML tag {tag!r}", loc)
                result = self._mapping(node, loc)
            else:  # pragma: no cover - composer yields only the three node kinds
                raise _LoadError(node.start_mark.line + 1, "unsupported YAML node", loc)
        finally:
            self.active.discard(key)
            self.depth -= 1
        self.done[key] = result
        return result

    def _mapping(self, node: MappingNode, loc: Loc) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        size = 1
        merged: list[dict[str, Any]] = []
        for knode, vnode in node.value:
            if knode.tag == _MERGE:
                sources = vnode.value if isinstance(vnode, SequenceNode) else [vnode]
                for src in sources:
                    v, n = self._build(src, loc, knode.start_mark.line + 1)
                    if not isinstance(v, dict):
                        raise _LoadError(src.start_mark.line + 1, "a merge key (<<) needs a mapping", loc)
                    merged.append(v)
                    size += n
                continue
            if not isinstance(knode, ScalarNode):
                raise _LoadError(knode.start_mark.line + 1, "a mapping key must be a plain scalar", loc)
            k = knode.value
            if k in out:
                raise _LoadError(knode.start_mark.line + 1, f'duplicate field "{k}"', loc + (k,))
            v, n = self._build(vnode, loc + (k,), knode.start_mark.line + 1)
            out[k] = v
            size += n
        for m in merged:  # explicit keys win over merged ones, as YAML's merge key specifies
            for k, v in m.items():
                out.setdefault(k, v)
        return out, size


def _scalar_key(knode: Node) -> str | None:
    return knode.value if isinstance(knode, ScalarNode) else None


def locate(node: Node | None, loc: Loc) -> int | None:
    """Decides which line (1-based) a field path is written on, or its nearest existing parent's line."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, MappingNode) and isinstance(part, str):
            for knode, vnode in node.value:
                if _scalar_key(knode) == part:
                    line, node = knode.start_mark.line + 1, vnode
                    break
            else:
                return line
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


class _FileNodes:
    """The composed nodes of one file, made only when an error has to be placed on a line."""

    def __init__(self, text: str, is_json: bool):
        self.text, self.is_json = text, is_json
        self._nodes: list[Node | None] | None = None

    def node(self, index: int) -> Node | None:
        """Gives the node of the index-th document of the file (None if it cannot be composed)."""
        if self._nodes is None:
            # JSON is (nearly) a subset of YAML's flow style, so the YAML composer gives JSON line
            # numbers too. Keeping node trees of every file alive instead made loading 5x slower.
            try:
                self._nodes = list(yaml.compose_all(self.text, Loader=_ManifestLoader))
            except yaml.YAMLError:
                self._nodes = []
        return self._nodes[index] if index < len(self._nodes) else None


@dataclass
class _Doc:
    """One object-shaped document with what is needed to place its errors."""

    path: str
    data: Any
    source: _FileNodes
    index: int  # position of the document in its file
    prefix: Loc = ()  # where the object sits inside its document (`items[i]` of a List)

    def line_of(self, loc: Loc) -> int | None:
        """Decides the line of a field of this object (1 when the file cannot be composed)."""
        node = self.source.node(self.index)
        if node is None:
            return 1
        return locate(node, self.prefix + loc)


def _line_text(text: str, line: int) -> str:
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _decode(path: str, data: bytes) -> tuple[str | None, Problem | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return None, Problem(path, line, "", f"not valid UTF-8: byte 0x{data[e.start]:02x} at column {col}")
    if text.startswith("\ufeff"):
        text = text[1:]
    return text, None


def _yaml_docs(path: str, text: str, max_alias_nodes: int, problems: list[Problem]) -> list[_Doc]:
    docs: list[_Doc] = []
    loader = _ManifestLoader(text)
    source = _FileNodes(text, False)
    index = -1
    try:
        while loader.check_node():
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            builder = _Builder(loader, max_alias_nodes)
            try:
                data = builder.build(node)
            except _LoadError as e:
                problems.append(Problem(path, e.line, format_path(e.loc), e.message))
                continue
            if data is None:  # an empty document (`---` at the end of a file) defines nothing
                continue
            docs.append(_Doc(path, data, source, index))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        where = _line_text(text, line)
        indent = where[: len(where) - len(where.lstrip(" \t"))]
        if "\t" in indent or ("\t" in (e.problem or "") or "'\\t'" in (e.problem or "")):
            problems.append(Problem(path, line, "", "tab character in indentation (YAML indents with spaces only)"))
        else:
            context = ""
            if e.context and e.problem:
                started = f" started on line {e.context_mark.line + 1}" if e.context_mark else ""
                context = f" ({e.context}{started})"
            problems.append(Problem(path, line, "", f"malformed YAML: {e.problem or e.context}{context}"))
    except yaml.YAMLError as e:
        problems.append(Problem(path, 1, "", f"malformed YAML: {e}"))
    finally:
        loader.dispose()
    return docs


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateJSONKey(k)
        out[k] = v
    return out


class _DuplicateJSONKey(ValueError):
    pass


_JSON_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_too_deep(text: str) -> int | None:
    """Decides on which line (1-based) a JSON text first nests deeper than MAX_NESTING_DEPTH (None: it does not);
    strings are skipped, so brackets inside them do not count."""
    depth = 0
    for m in _JSON_NESTING.finditer(text):
        t = m.group()
        if t in "[{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                return text.count("\n", 0, m.start()) + 1
        elif t in "]}":
            depth -= 1
    return None


def _json_docs(path: str, text: str, problems: list[Problem]) -> list[_Doc]:
    deep = _json_too_deep(text)
    if deep is not None:
        problems.append(Problem(path, deep, "", f"nested more than {MAX_NESTING_DEPTH} levels deep"))
        return []
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates)
    except _DuplicateJSONKey as e:
        node = _FileNodes(text, True).node(0)
        line = 1
        if node is not None:  # find the second occurrence of the key to name its line
            line = _find_duplicate_line(node, str(e)) or 1
        problems.append(Problem(path, line, "", f'duplicate field "{e}"'))
        return []
    except json.JSONDecodeError as e:
        problems.append(Problem(path, e.lineno, "", f"malformed JSON: {e.msg} (column {e.colno})"))
        return []
    return [_Doc(path, data, _FileNodes(text, True), 0)]


def _find_duplicate_line(node: Node, key: str) -> int | None:
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, MappingNode):
            seen = set()
            for knode, vnode in n.value:
                k = _scalar_key(knode)
                if k == key and k in seen:
                    return knode.start_mark.line + 1
                seen.add(k)
                stack.append(vnode)
        elif isinstance(n, SequenceNode):
            stack.extend(n.value)
    return None


@dataclass
class Entry:
    """One valid object of a file: its identity, the lines naming it, the hash of what its author owns, and its
    content (the validated model, or its Kubernetes JSON when it came from the cache; each made from the other on demand)."""

    kind: str
    namespace: str  # metadata.namespace as validated ("" for cluster-scoped kinds)
    name: str
    name_line: int | None
    ns_line: int | None
    digest: str  # content_hash of the authored content: the store's desired_hash
    model: Any = None
    doc: dict | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """(kind, namespace or "", name), the identity duplicates are found by."""
        return self.kind, self.namespace, self.name

    def hash(self) -> str:
        """The hash of what the object's author owns (the store's desired_hash)."""
        if not self.digest:
            self.digest = content_hash(authored_content(self.k8s()))
        return self.digest

    def k8s(self) -> dict:
        """The object's Kubernetes JSON (defaults filled)."""
        if self.doc is None:
            self.doc = to_k8s(self.model)
        return self.doc

    def obj(self) -> Any:
        """The validated model (re-validated from the Kubernetes JSON when it came from the cache)."""
        if self.model is None:
            self.model = parse_object(self.doc)
        return self.model


@dataclass
class FileObjects:
    """What one file defines: its valid objects in file order, and its own problems (cross-file ones come later)."""

    path: str
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Loaded:
    """Objects loaded from files, where each was defined, and every problem found."""

    entries: list[Entry] = field(default_factory=list)
    origins: dict[tuple[str, str, str], tuple[str, int | None]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def objects(self) -> list[Any]:
        """The validated models, in file order."""
        return [e.obj() for e in self.entries]


def _expand_lists(doc: _Doc, problems: list[Problem]) -> list[_Doc]:
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1":
        items = data.get("items")
        if not isinstance(items, list):
            problems.append(Problem(doc.path, doc.line_of(("items",)), "items", "Required value: a List needs items"))
            return []
        return [_Doc(doc.path, item, doc.source, doc.index, ("items", i)) for i, item in enumerate(items)]
    return [doc]


def load_files(files: list[tuple[str, bytes]], max_bytes: int = DEFAULT_MAX_BYTES,
               max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES, plaintext_secrets: bool = False) -> Loaded:
    """Decides which objects the files define and which problems make them unacceptable (all of them, located)."""
    with gc_paused():
        return assemble([parse_file(path, data, max_bytes, max_alias_nodes, plaintext_secrets=plaintext_secrets)
                         for path, data in files])


class gc_paused:
    """Loading allocates millions of small acyclic objects; the cyclic collector would otherwise walk the growing
    heap again and again (measured: it doubled the time for 5,000 manifests), so it is paused meanwhile."""

    def __enter__(self) -> None:
        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: Any) -> None:
        if self.was:
            gc.enable()


def parse_file(path: str, data: bytes, max_bytes: int = DEFAULT_MAX_BYTES,
               max_alias_nodes: int = DEFAULT_MAX_ALIAS_NODES, with_docs: bool = False,
               plaintext_secrets: bool = False) -> FileObjects:
    """Decides which valid objects one file defines (file order) and which problems it has on its own.

    `with_docs` also makes each object's Kubernetes JSON and keeps it (what the manifest cache stores). A Secret
    in a file that is not `*.age` is a problem unless `plaintext_secrets` (the repository opted in)."""
    out = FileObjects(path)
    problems = out.problems
    if len(data) > max_bytes:
        problems.append(Problem(path, None, "", f"file is {len(data)} bytes, more than the limit of "
                                                f"{max_bytes} bytes"))
        return out
    text, bad = _decode(path, data)
    if bad is not None:
        problems.append(bad)
        return out
    assert text is not None
    raw = _json_docs(path, text, problems) if path.removesuffix(".age").endswith(".json") else _yaml_docs(
        path, text, max_alias_nodes, problems)
    docs: list[_Doc] = []
    for d in raw:
        docs.extend(_expand_lists(d, problems))
    for d in docs:
        try:
            obj = parse_object(d.data)
        except ObjectInvalid as e:
            for loc, msg in e.locs:
                problems.append(Problem(d.path, d.line_of(loc), format_path(loc), msg))
            continue
        if obj.kind == "Secret" and not plaintext_secrets and not path.endswith(".age"):
            problems.append(Problem(path, d.line_of(("kind",)), "kind",
                                    "a Secret in plain text in Git is refused: encrypt the file with `gitkube secret "
                                    "encrypt FILE --recipient AGE_PUBKEY` (it becomes FILE.age), or opt in with a "
                                    "file named .gitkube-plaintext-secrets at the repository root or in --path"))
        doc = to_k8s(obj) if with_docs else None
        out.entries.append(Entry(obj.kind, obj.metadata.namespace or "", obj.metadata.name or "",
                                 d.line_of(("metadata", "name")), d.line_of(("metadata", "namespace")),
                                 content_hash(authored_content(doc)) if doc is not None else "", obj, doc))
    return out


def assemble(files: list[FileObjects]) -> Loaded:
    """Decides what the files define together: duplicates across files and namespaces that no file defines are
    problems (checked on the objects alone, so cached files need no re-reading); no object when any problem."""
    out = Loaded()
    problems = out.problems
    seen: dict[tuple[str, str, str], tuple[str, int | None]] = {}
    namespaces = {"default"}
    placed: list[tuple[Entry, str]] = []
    for f in files:
        problems.extend(f.problems)
        for e in f.entries:
            key, line = e.key, e.name_line
            if key in seen:
                first_path, first_line = seen[key]
                what = f"{key[0]} {key[1] + '/' if key[1] else ''}{key[2]}"
                problems.append(Problem(f.path, line, "metadata.name",
                                        f"duplicate object: {what} is also defined at {first_path}:{first_line}"))
                problems.append(Problem(first_path, first_line, "metadata.name",
                                        f"duplicate object: {what} is also defined at {f.path}:{line}"))
                continue
            seen[key] = (f.path, line)
            if e.kind == "Namespace":
                namespaces.add(e.name)
            placed.append((e, f.path))
    for e, path in placed:
        if e.kind in NAMESPACED and e.namespace not in namespaces:
            problems.append(Problem(path, e.ns_line, "metadata.namespace",
                                    f'Not found: namespace "{e.namespace}" is neither "default" nor defined in '
                                    'this revision'))
    if not problems:
        out.entries = [e for e, _ in placed]
        out.origins = seen
    problems.sort(key=lambda p: (p.path, p.line or 0, p.field, p.message))
    return out


__all__ = ["load_files", "parse_file", "assemble", "Entry", "FileObjects", "Loaded", "locate", "DEFAULT_MAX_BYTES",
           "DEFAULT_MAX_ALIAS_NODES", "KINDS"]
