"""The commands: add-class --json, revoke, new-code, list, show, rules, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from qwen_widgets.gateway import DataFolder, Store
from qwen_widgets.gateway.cli import main

ENV_PYTHON = [sys.executable, "-m", "qwen_widgets.gateway"]


def clean_env() -> dict[str, str]:
    """The test's environment without a key or a Hub's service variables."""
    return {name: value for name, value in os.environ.items() if not name.startswith(("APIMART_", "JUPYTERHUB_"))}


def test_add_class_json_prints_each_code_once(data, capsys):
    assert main(["add-class", "art", "--students", "3", "--images-per-day", "5", "--window", "10:00-11:00",
                 "--rule", "blood", "--data", str(data), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["class"] == "art"
    assert [c["name"] for c in printed["codes"]] == ["student-1", "student-2", "student-3"]
    codes = [c["code"] for c in printed["codes"]]
    assert len(set(codes)) == 3 and all(code.startswith("qwg_") and len(code) >= 36 for code in codes)
    stored = b"".join(path.read_bytes() for path in DataFolder(data).path.iterdir() if path.is_file())
    assert not any(code.encode() in stored for code in codes)  # only hashes are kept
    with Store(DataFolder(data).database) as store:
        assert store.student_for_code(codes[1]).name == "student-2"
        info = store.class_info("art")
    assert str(info.policy.window) == "10:00-11:00" and info.rules == ("blood",)
    assert info.policy.class_images_per_day == 15


def test_revoke_and_new_code(data, capsys):
    main(["add-class", "art", "--students", "2", "--images-per-day", "5", "--data", str(data), "--json"])
    old = json.loads(capsys.readouterr().out)["codes"][0]["code"]
    assert main(["revoke", "art", "student-1", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "student-1 of art: revoked; their code no longer works.\n"
    assert main(["revoke", "art", "student-1", "--data", str(data)]) == 0
    assert "already" in capsys.readouterr().out
    assert main(["new-code", "art", "student-1", "--data", str(data), "--json"]) == 0
    new = json.loads(capsys.readouterr().out)["codes"][0]["code"]
    with Store(DataFolder(data).database) as store:
        assert store.student_for_code(old) is None
        assert store.student_for_code(new).revoked is False


def test_list_show_and_rules(data, capsys):
    main(["add-class", "art", "--students", "2", "--images-per-day", "5", "--data", str(data), "--json"])
    capsys.readouterr()
    assert main(["list", "--data", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"][0] == {
        "class": "art", "students": 2, "revoked": 0, "images_today": 0, "class_images_per_day": 10,
        "cost_today": 0, "window": None}
    assert main(["rules", "art", "--add", "blood", "--add", "re:gor(e|y)", "--data", str(data)]) == 0
    assert capsys.readouterr().out == "Prompt rules of art: blood, re:gor(e|y)\n"
    assert main(["rules", "art", "--remove", "blood", "--data", str(data)]) == 0
    assert main(["show", "art", "--data", str(data), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert shown["rules"] == ["re:gor(e|y)"] and [s["name"] for s in shown["students"]] == ["student-1", "student-2"]


def test_errors_are_one_line_naming_the_field(data):
    cases = [
        (["revoke", "art", "student-1"], "--data: no gateway data in"),
        (["serve", "--hub-class", "art"], "--hub-class: JupyterHub mode runs as a Hub service, which sets "
                                          "JUPYTERHUB_API_TOKEN; it is not set"),
        (["add-class", "art", "--students", "2", "--images-per-day", "0"], "--images-per-day: must be a whole number"),
        (["add-class", "art", "--students", "2", "--images-per-day", "2", "--window", "10-11"], "--window: expected"),
        (["add-class", "a b", "--students", "2", "--images-per-day", "2"], "NAME: a class name has"),
        (["add-class", "art", "--students", "2", "--images-per-day", "2", "--spend-per-day", "-1"],
         "--spend-per-day: must be a number above 0"),
        (["add-class", "art", "--students", "2", "--images-per-day", "2", "--rule", "re:["], "--rule: not a valid"),
    ]
    for argv, words in cases:
        done = subprocess.run(ENV_PYTHON + argv + ["--data", str(data)], capture_output=True, text=True, timeout=60,
                              env=clean_env())
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr, done.stderr
        assert lines[0].startswith("python -m qwen_widgets.gateway ")
    main(["add-class", "art", "--students", "1", "--images-per-day", "2", "--data", str(data)])
    done = subprocess.run(ENV_PYTHON + ["revoke", "art", "student-7", "--data", str(data)], capture_output=True,
                          text=True, timeout=60, env=clean_env())
    assert done.returncode == 2 and done.stderr.strip().endswith("STUDENT: class 'art' has no student named 'student-7'")


def test_the_commands_mount_on_another_parser(data, capsys):
    import argparse

    from qwen_widgets.gateway.cli import add_subparsers, run

    parser = argparse.ArgumentParser(prog="qwen-widgets")
    top = parser.add_subparsers(dest="command")
    gateway = top.add_parser("gateway").add_subparsers(dest="gateway_command", required=True)
    add_subparsers(gateway)
    args = parser.parse_args(["gateway", "add-class", "art", "--students", "1", "--images-per-day", "2",
                              "--data", str(data), "--json"])
    assert run(args) == 0
    assert json.loads(capsys.readouterr().out)["codes"][0]["name"] == "student-1"
    again = parser.parse_args(["gateway", "add-class", "art", "--students", "1", "--images-per-day", "2",
                               "--data", str(data)])
    assert run(again) == 2
    assert capsys.readouterr().err == "qwen-widgets gateway add-class: error: NAME: a class named 'art' already exists\n"
