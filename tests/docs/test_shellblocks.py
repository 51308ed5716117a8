"""The doc runner itself: it fails on a wrong output, a failed command, a stray process."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.docs.shellblocks import DocError, extract, mismatch, run_commands

DOC = """# A doc

Prose, then an illustration that is not run:

```sh
false
```

```console
$ printf 'one\\ntwo\\n'     # a comment for people
one
two
$ X=$(echo hidden-value | tr a-z A-Z)
$ echo "token $X" \\
    and more
token HIDDEN-VALUE and more
$ printf 'a\\nb\\nc\\nd\\n'
a
…
d
$ sh -c 'echo refused >&2; exit 3'
refused
$ echo $?
3
```
"""


def test_extract_reads_commands_continuations_and_output() -> None:
    """Only the console block; continued lines join the command; output lines follow."""
    commands = extract(DOC, "doc.md")
    assert [c.line for c in commands] == [10, 13, 14, 17, 21, 23]
    assert commands[0].expected == ("one", "two")
    assert commands[1].expected == ()
    assert commands[2].text == 'echo "token $X" \\\n    and more'
    assert commands[0].where == "doc.md:10 (console block 1)"


def test_a_true_doc_runs(tmp_path: Path) -> None:
    """The doc above prints what it shows (variables carry over, `…` lines, `echo $?`)."""
    assert len(run_commands(extract(DOC, "doc.md"), tmp_path)) == 6


def test_a_wrong_expected_output_fails_naming_the_line(tmp_path: Path) -> None:
    """A doc that shows `token HIDDEN` where the command prints more fails at that line."""
    wrong = DOC.replace("token HIDDEN-VALUE and more", "token HIDDEN and more")
    with pytest.raises(DocError, match=r"(?s)doc\.md:14 \(console block 1\).*printed other"):
        run_commands(extract(wrong, "doc.md"), tmp_path)


def test_a_wrong_exit_code_fails(tmp_path: Path) -> None:
    """`echo $?` compares the exit status like any output; the message names the command."""
    wrong = DOC.replace("$ echo $?\n3", "$ echo $?\n4")
    with pytest.raises(DocError, match=r"(?s)doc\.md:23.*exit 3.*then `echo \$\?`"):
        run_commands(extract(wrong, "doc.md"), tmp_path)


def test_a_failing_command_fails_unless_its_status_is_shown(tmp_path: Path) -> None:
    """A non-zero exit not followed by `echo $?` fails the doc, output or not."""
    doc = "```console\n$ sh -c 'echo refused >&2; exit 3'\nrefused\n$ echo next\nnext\n```\n"
    with pytest.raises(DocError, match=r"doc\.md:2 .*exited 3:\nrefused"):
        run_commands(extract(doc, "doc.md"), tmp_path)


def test_output_the_doc_does_not_show_fails(tmp_path: Path) -> None:
    """A command shown with no output must print nothing, on stdout or stderr."""
    doc = "```console\n$ echo surprise >&2\n```\n"
    with pytest.raises(DocError, match="surprise"):
        run_commands(extract(doc, "doc.md"), tmp_path)


def test_mismatch_placeholders() -> None:
    """`…` in a line is any run of characters; a `…` line is any number of lines."""
    assert mismatch(("ok size 5 root …",), ["ok size 5 root abc="]) is None
    assert mismatch(("ok size 5 root …",), ["ok size 6 root abc="]) is not None
    assert mismatch(("a", "…", "z"), ["a", "z"]) is None
    assert mismatch(("a", "…", "z"), ["a", "b", "c", "z"]) is None
    assert mismatch(("a", "…", "z"), ["a", "b", "c"]) is not None
    assert mismatch(("a",), ["a", "extra"]) is not None
    assert mismatch(("a.b",), ["axb"]) is not None  # no regex leaks through
    assert mismatch((), [""]) is None


def test_background_jobs_end_with_the_doc(tmp_path: Path) -> None:
    """A background process the doc starts is gone once the doc is done."""
    doc = "```console\n$ sleep 300 &\n$ echo $! > sleeper.pid\n```\n"
    run_commands(extract(doc, "doc.md"), tmp_path)
    pid = int((tmp_path / "work" / "sleeper.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_gets_a_free_port_and_is_stopped(tmp_path: Path) -> None:
    """`ibx serve --port 8000 &` runs on a free port used everywhere, then stops."""
    doc = (
        "```console\n"
        "$ ibx serve --init --port 8000 &\n"
        "$ curl -s --cacert .ibx/ca-bundle.pem https://localhost:8000/healthz; echo\n"
        '{"status":"ok"}\n'
        "$ echo localhost:8000 > url.txt   # the doc's port, substituted\n"
        "```\n"
    )
    run_commands(extract(doc, "doc.md"), tmp_path)
    port = int((tmp_path / "work" / "url.txt").read_text().split(":")[1])
    assert port != 8000  # a free port from the ephemeral range, not the doc's
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
