"""Print the project's dependencies from pyproject.toml (one per line), so the Makefile can build
an environment without installing the project itself (the checkout is used in place)."""

import sys
import tomllib

extras = sys.argv[1:]
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
for requirement in project["dependencies"]:
    print(requirement)
for extra in extras:
    for requirement in project["optional-dependencies"][extra]:
        print(requirement)
