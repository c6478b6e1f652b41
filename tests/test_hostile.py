"""Hostile but valid answers: quotes, apostrophes, backslashes, unicode, shell syntax.

Free-text answers land in TOML, Markdown, the LICENSE and the answers file;
none of them may break parsing, linting or round-tripping, and the derived
names must come out as plain ASCII identifiers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import bake
from test_bake_matrix import check_everything

HOSTILE_NAME = "O'Brien's \"Quoted\" Game — Élan ü 🎮"
HOSTILE_DESCRIPTION = (
    'He said "hi" & it\'s <b>bold</b>: a\\b \\" """triple""" \'\'\' $HOME `uname` '
    "$(echo no) % {braces} [x](y) # not a comment ; 100% \\n"
)
HOSTILE_AUTHOR = 'Zoë O\'Connor "Z" Ørsted \\ 山田'


@pytest.mark.parametrize("use_docker", [True, False])
def test_hostile_free_text_round_trips(tmp_path: Path, use_docker: bool) -> None:
    answers = {
        "project_name": HOSTILE_NAME,
        "description": HOSTILE_DESCRIPTION,
        "author_name": HOSTILE_AUTHOR,
        "author_email": "zoë@exämple.org",
        "use_docker": use_docker,
    }
    repo = bake(tmp_path, **answers)
    check_everything(repo, answers)  # ruff, TOML/YAML parse, no Jinja left, pyproject fields

    assert repo.context["project_slug"] == "o-brien-s-quoted-game-elan-u"
    assert repo.context["package_name"] == "o_brien_s_quoted_game_elan_u"
    assert repo.path.name == "o-brien-s-quoted-game-elan-u"
    assert (repo.path / "src" / "o_brien_s_quoted_game_elan_u" / "cli.py").is_file()

    project = repo.toml("pyproject.toml")["project"]
    assert project["description"] == HOSTILE_DESCRIPTION
    assert project["authors"][0]["name"] == HOSTILE_AUTHOR
    readme = repo.read("README.md")
    assert readme.startswith(f"# {HOSTILE_NAME}\n\n{HOSTILE_DESCRIPTION}\n")
    assert HOSTILE_AUTHOR in repo.read("LICENSE")
    recorded = json.loads(repo.read(".cookiecutter.json"))
    assert recorded["description"] == HOSTILE_DESCRIPTION
    assert recorded["project_name"] == HOSTILE_NAME


@pytest.mark.parametrize(
    ("project_name", "slug"),
    [
        ("Mon Jeu de Rôle", "mon-jeu-de-role"),
        ("  Spaces   Everywhere  ", "spaces-everywhere"),
        ("Under_Score & Ampersand", "under-score-ampersand"),
        ("Ünïcödé Ärena", "unicode-arena"),
        ("Quote\"Back\\slash'Tick", "quote-back-slash-tick"),
    ],
)
def test_derived_names_are_ascii_kebab_and_snake(
    tmp_path: Path, project_name: str, slug: str
) -> None:
    repo = bake(tmp_path, project_name=project_name)
    assert repo.context["project_slug"] == slug
    assert repo.context["package_name"] == slug.replace("-", "_")
    check_everything(repo, {"project_name": project_name})
