"""The type stubs (python/shmhub/__init__.pyi) and the module name the
same things."""

import ast

import shmhub

from conftest import REPO


def stub_names():
    """{name: set of member names, or None} for each top-level name."""
    tree = ast.parse((REPO / "bindings/python/python/shmhub/__init__.pyi").read_text())
    names = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names[node.name] = {n.name for n in node.body
                               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))} | {
                n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
        elif isinstance(node, ast.AnnAssign):
            names[node.target.id] = None
    return names


def public(names):
    return {n for n in names if not n.startswith("_")}


def test_the_stubs_name_what_the_module_has():
    stubs = stub_names()
    # `shmhub.shmhub` is the extension module the package re-exports.
    assert public(stubs) == public(dir(shmhub)) - {"shmhub"}
    for name in ["Host", "Guest", "Peer", "Readiness", "Ended"]:
        assert public(stubs[name]) == public(dir(getattr(shmhub, name))), name
