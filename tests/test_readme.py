"""The README's settings tables are generated from the settings declarations; keep them in step."""

from pathlib import Path

from imagebind_vectorizer.settings import ConnectionSettings, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_settings_table_is_current() -> None:
    assert settings_table() in README.read_text(), (
        "README.md's settings table is stale: paste `python -c 'from imagebind_vectorizer.settings "
        "import settings_table; print(settings_table())'` into its Settings section")


def test_readme_connection_table_is_current() -> None:
    assert settings_table(ConnectionSettings) in README.read_text(), (
        "README.md's connection table is stale: paste `python -c 'from imagebind_vectorizer.settings "
        "import ConnectionSettings, settings_table; print(settings_table(ConnectionSettings))'` into its "
        "'Running Weaviate with this vectorizer' section")


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make demo" in text and "make test" in text


def _map_lines() -> list[str]:
    text = README.read_text()
    section = text[text.index("## How it fits together"):]
    block = section[section.index("```") + 3:]
    return block[:block.index("```")].strip("\n").splitlines()


def test_readme_map_matches_the_folders() -> None:
    """Every path the map names exists, and every folder of the package is on the map."""
    root = README.parent
    named: set[Path] = set()
    parents: list[tuple[int, Path]] = []
    for line in _map_lines():
        indent = len(line) - len(line.lstrip())
        first = line.split()[0] if line.strip() else ""
        if not first or not (first.endswith("/") or first.endswith(".py")) or indent > 4:
            continue  # a continuation line of a description
        parents = [(i, p) for i, p in parents if i < indent]
        path = (parents[-1][1] if parents else root) / first.rstrip("/")
        for extra in line.split()[1:]:  # "docker/  helm/imagebind-vectorizer/" on one line
            if extra.endswith("/") and "  " + extra in line and not parents:
                named.add(root / extra.rstrip("/"))
        assert path.exists(), f"README's map names {path.relative_to(root)}, which does not exist"
        named.add(path)
        if first.endswith("/"):
            parents.append((indent, path))
    package = root / "imagebind_vectorizer"
    folders = {p for p in package.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(str(p.relative_to(root)) for p in folders - named)
    assert not missing, f"folders missing from README's map: {missing}"
    assert all(p.exists() for p in named)
