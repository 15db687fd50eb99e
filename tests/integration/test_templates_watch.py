"""--template under --watch when the program is hostile: what it changes after the start never
chooses what a root shim writes, nor where.

The templates are read once, before the program starts: a SRC rewritten later (to name a
root-only file) is not read again. Each DEST's directory is opened once, at the check: a
directory swapped in at its path later receives nothing, and shim stops (78) rather than write
where the program no longer reads. With --as-files, whose ticks resolve in the supervisor
itself, the templates follow the same rules.
"""

from __future__ import annotations

import os
import signal

from tests.conftest import finish_process
from tests.integration.test_supervise import wait_for
from tests.integration.test_asfiles import tmpfs  # noqa: F401 - fixture
from tests.integration.test_templates import on_tmpfs  # noqa: F401 - fixture
from tests.real.test_template_watch import COUNTING_PROGRAM


def start(start_shim, template, destination, hups, *extra):
    return start_shim(["exec", "--allow-root", "--watch", "300ms", "--on-change", "signal:HUP",
                       "--template", f"{template}:{destination}", *extra,
                       "--", "sh", "-c", COUNTING_PROGRAM.format(hups=hups)])


def test_a_template_rewritten_after_the_start_is_not_read_again(start_shim, canaries, tmp_path,
                                                                 on_tmpfs):  # noqa: F811
    secret, root_only = tmp_path / "secret", tmp_path / "root-only"
    first, second = canaries.new("v1"), canaries.new("v2")
    secret.write_text(first)
    root_only.write_text(canaries.new("root-only"))
    root_only.chmod(0o400)
    template = tmp_path / "app.conf.tmpl"
    template.write_text('key={{ secret("ref+file://' + str(secret) + '") | raw }}\n')
    destination, hups = on_tmpfs / "app.conf", tmp_path / "hups"
    process = start(start_shim, template, destination, hups)
    assert wait_for(lambda: hups.exists() and destination.exists(), timeout=20)
    # What a program that could write the SRC would do: name a file only root may read.
    template.write_text('key={{ secret("ref+file://' + str(root_only) + '") | raw }}\n')
    secret.write_text(second)
    assert wait_for(lambda: destination.read_text() == f"key={second}\n", timeout=20)
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143


def test_a_destination_directory_swapped_after_the_start_gets_nothing(start_shim, canaries,
                                                                      tmp_path, on_tmpfs):  # noqa: F811
    secret, first = tmp_path / "secret", canaries.new("v1")
    secret.write_text(first)
    template = tmp_path / "app.conf.tmpl"
    template.write_text('key={{ secret("ref+file://' + str(secret) + '") | raw }}\n')
    directory = on_tmpfs / "conf"
    directory.mkdir(mode=0o755)
    hups = tmp_path / "hups"
    process = start(start_shim, template, directory / "app.conf", hups)
    assert wait_for(lambda: hups.exists() and (directory / "app.conf").exists(), timeout=20)
    checked = on_tmpfs / "checked"
    directory.rename(checked)
    directory.mkdir()
    directory.chmod(0o1777)          # anyone's, as a program that could do the swap would make it
    secret.write_text(canaries.new("v2"))
    assert wait_for(lambda: process.poll() is not None, timeout=20)
    code, _, stderr = finish_process(process, canaries)
    assert code == 78, stderr
    assert f"--template {directory}/app.conf: cannot write it" in stderr
    assert "no longer the one checked" in stderr
    assert os.listdir(directory) == []
    assert (checked / "app.conf").read_text() == f"key={first}\n" and hups.read_text() == ""


def test_with_as_files_the_in_process_ticks_rewrite_only_the_changed_template(
        start_shim, canaries, tmp_path, on_tmpfs, tmpfs):  # noqa: F811
    """--as-files keeps re-resolution in the supervisor: templates follow the same rules there."""
    secret, variable = tmp_path / "secret", tmp_path / "variable"
    secret.write_text(canaries.new("v1"))
    variable.write_text(canaries.new("e1"))
    template = tmp_path / "app.conf.tmpl"
    template.write_text('key={{ secret("ref+file://' + str(secret) + '") | raw }}\n')
    destination, hups = on_tmpfs / "app.conf", tmp_path / "hups"
    process = start_shim(["exec", "--allow-root", "--watch", "300ms", "--on-change", "signal:HUP",
                          "--as-files", str(tmpfs), "--template", f"{template}:{destination}",
                          "--", "sh", "-c", COUNTING_PROGRAM.format(hups=hups)],
                         {"E": f"file:{variable}"})
    assert wait_for(lambda: hups.exists() and destination.exists(), timeout=20)
    second = canaries.new("v2")
    secret.write_text(second)
    assert wait_for(lambda: destination.read_text() == f"key={second}\n", timeout=20)
    assert wait_for(lambda: hups.read_text().count("hup") == 1, timeout=10)
    rewritten = destination.stat().st_ino
    new_variable = canaries.new("e2")
    variable.write_text(new_variable)
    assert wait_for(lambda: (tmpfs / "E").read_text() == new_variable, timeout=20)
    assert wait_for(lambda: hups.read_text().count("hup") == 2, timeout=10)
    assert destination.stat().st_ino == rewritten
    process.send_signal(signal.SIGTERM)
    assert finish_process(process, canaries)[0] == 143
