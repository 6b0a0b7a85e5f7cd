"""The house plan holds: imports point one way with the data, no import circles, and every reader of shards takes
any path Beam's FileSystems knows (a scheme other than the local one is exercised here)."""

import ast
from pathlib import Path

from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem

ROOT = Path(__file__).resolve().parent.parent
# What each part may import, in data-flow order (a package may always import itself and core/).
ALLOWED = {
    "core": set(),
    "crawl": set(),
    "crawl.urls": set(),
    "crawl.sources": {"crawl.urls"},
    "crawl.links": {"crawl.sources", "crawl.urls"},
    "crawl.fetch": {"crawl.links", "crawl.urls"},
    "crawl.text": {"crawl.links", "crawl.urls"},
    "dedup": set(),
    "pipeline": {"crawl", "dedup"},
    "train": set(),                 # the trainer reads shards through core/ (shard_format, tokenizer) alone
}


def _modules():
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("core", "crawl", "dedup", "pipeline", "train"):
            name = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
            yield name, path


def _imports(path: Path):
    """Every module a file imports, at run time or for type checking only (an `if TYPE_CHECKING:` import is a
    dependency all the same), inside functions too. `from a import b` names a.b where that is a module of ours."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:
                if (ROOT / node.module.replace(".", "/") / alias.name).with_suffix(".py").is_file() or \
                        (ROOT / node.module.replace(".", "/") / alias.name / "__init__.py").is_file():
                    yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def _part(module: str) -> str:
    return next(p for p in sorted(ALLOWED, key=len, reverse=True) if module == p or module.startswith(p + "."))


def _ours(module: str) -> bool:
    return module.split(".")[0] in ("core", "crawl", "dedup", "pipeline", "train", "webtext")


def test_imports_point_one_way():
    wrong = []
    for name, path in _modules():
        part = _part(name)
        for imported in filter(_ours, _imports(path)):
            if imported == "core" or imported.startswith("core.") or _part(imported) == part:
                continue
            if not any(imported == a or imported.startswith(a + ".") for a in ALLOWED[part]):
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_no_import_circles():
    modules = dict(_modules())
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_the_model_file_imports_only_torch():
    assert {m.split(".")[0] for m in _imports(ROOT / "train" / "model.py")} <= {"torch", "math", "dataclasses",
                                                                               "__future__"}


# ---------------------------------------------------------------------------------------- another filesystem
class _OtherScheme(LocalFileSystem):
    """The local disk under the scheme `webtexttest://`: a stand-in for gs:// that Beam dispatches by scheme, so
    any reader that bypasses FileSystems (pathlib, open) fails on it."""
    PREFIX = "webtexttest://"

    @classmethod
    def scheme(cls):
        return "webtexttest"

    def _l(self, path):
        return path[len(self.PREFIX):] if path.startswith(self.PREFIX) else path

    def join(self, base, *paths):
        return self.PREFIX + super().join(self._l(base), *paths)

    def split(self, path):
        head, tail = super().split(self._l(path))
        return self.PREFIX + head, tail

    def match(self, patterns, limits=None):
        results = LocalFileSystem(None).match([self._l(p) for p in patterns], limits)   # its own split/join
        return [MatchResult(self.PREFIX + r.pattern,
                            [FileMetadata(self.PREFIX + m.path, m.size_in_bytes, m.last_updated_in_seconds)
                             for m in r.metadata_list]) for r in results]

    def create(self, path, *args, **kwargs):
        return super().create(self._l(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._l(path), *args, **kwargs)

    def exists(self, path):
        return super().exists(self._l(path))

    def size(self, path):
        return super().size(self._l(path))


def test_shard_readers_take_any_filesystem_path(tmp_path):
    from test_data_loader import write_prose_shards

    from pipeline.shards import cli as shards_cli
    from core.shard_format import read_manifest, verify
    from train.data import TrainLoader

    local = write_prose_shards(tmp_path / "shards")
    remote = _OtherScheme.PREFIX + str(local)
    assert read_manifest(remote) == read_manifest(local)
    assert verify(remote) == []
    assert shards_cli.main(["verify", remote]) == 0
    a = TrainLoader(remote, 4, 32, seed=1).next_batch()[0]
    b = TrainLoader(str(local), 4, 32, seed=1).next_batch()[0]
    assert a.tolist() == b.tolist()
    (local / "stray.arrow").write_bytes(b"not a shard")
    assert verify(remote) == ["stray.arrow: shard on disk but not in the manifest"]
