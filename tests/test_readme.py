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
