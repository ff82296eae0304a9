"""Shared test helpers for the CLI in this process: run `tlkit ARGV`, and assert a user
mistake gives one line on stderr and exit code 2."""

from tlkit import cli


def run_cli(capsys, *argv):
    """`tlkit ARGV` in this process (arguments may be paths); returns (code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(capsys, tmp_path, argv, needle, **names):
    """`tlkit ARGV` (with {model}, {photos}, {bad} (a broken PNG), {tmp} filled in) exits
    with code 2 and one stderr line containing `needle`."""
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    argv = [a.format(bad=bad, tmp=tmp_path, **names) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
