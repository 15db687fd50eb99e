"""shim.tools.program_writable.changeable_part on real files: what "the program can change" means.

Each case builds the tree with real owners and modes (we are root) and asks about uid 65534
(group 65534); the answer is the first place on the way that it can change, or None.
"""

from __future__ import annotations

import os

import pytest

from shim.tools.program_writable import Target, changeable_part

NOBODY = 65534
PROGRAM = Target(NOBODY, (NOBODY,))


@pytest.fixture
def root_tree(tmp_path):
    """tmp_path made searchable (0755) and root's: the starting point of every case."""
    for directory in (tmp_path, *tmp_path.parents):
        if directory == directory.parent:
            break
        os.chmod(directory, os.stat(directory).st_mode | 0o055)
    return tmp_path


def _make(path, mode, uid=0, gid=0, directory=False, text="x"):
    if directory:
        path.mkdir()
    else:
        path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    return path


def test_a_root_file_in_root_directories_is_not_changeable(root_tree):
    secret = _make(root_tree / "secret", 0o644)
    assert changeable_part(str(secret), PROGRAM) is None


@pytest.mark.parametrize("mode, uid, gid", [(0o600, NOBODY, 0), (0o664, 0, NOBODY), (0o646, 0, 0)],
                         ids=["owned", "group-writable", "world-writable"])
def test_a_file_it_owns_or_may_write_is_changeable(root_tree, mode, uid, gid):
    secret = _make(root_tree / "secret", mode, uid, gid)
    assert changeable_part(str(secret), PROGRAM) == str(secret)


def test_a_directory_it_owns_makes_everything_below_changeable(root_tree):
    directory = _make(root_tree / "app", 0o755, NOBODY, NOBODY, directory=True)
    inner = _make(directory / "inner", 0o755, directory=True)
    secret = _make(inner / "secret", 0o600)
    assert changeable_part(str(secret), PROGRAM) == str(inner)


def test_a_sticky_world_writable_directory_protects_roots_entries_only(root_tree):
    tmp = _make(root_tree / "tmp", 0o1777, directory=True)
    roots = _make(tmp / "roots", 0o644)
    theirs = _make(tmp / "theirs", 0o444, NOBODY, NOBODY)
    assert changeable_part(str(roots), PROGRAM) is None
    assert changeable_part(str(theirs), PROGRAM) == str(theirs)
    assert changeable_part(str(tmp / "not-yet"), PROGRAM) == str(tmp / "not-yet")


def test_a_missing_entry_it_could_create_is_changeable(root_tree):
    directory = _make(root_tree / "app", 0o777, directory=True)
    assert changeable_part(str(directory / "absent"), PROGRAM) == str(directory / "absent")
    assert changeable_part(str(root_tree / "absent"), PROGRAM) is None


def test_a_link_is_checked_where_it_sits_and_where_it_leads(root_tree):
    app = _make(root_tree / "app", 0o755, NOBODY, NOBODY, directory=True)
    private = _make(root_tree / "private", 0o700, directory=True)
    roots = _make(private / "secret", 0o600)
    # root's link to root's file: fine
    (root_tree / "link").symlink_to(roots)
    assert changeable_part(str(root_tree / "link"), PROGRAM) is None
    # a link in its directory (it could point it anywhere): refused where it sits
    (app / "link").symlink_to(roots)
    assert changeable_part(str(app / "link"), PROGRAM) == str(app / "link")
    # root's link through a link it can change, then to root's file
    (root_tree / "via").symlink_to(app / "link")
    assert changeable_part(str(root_tree / "via"), PROGRAM) == str(app / "link")
    # root's link to a file it can change
    theirs = _make(app / "theirs", 0o600, NOBODY, NOBODY)
    (root_tree / "to-theirs").symlink_to(theirs)
    assert changeable_part(str(root_tree / "to-theirs"), PROGRAM) == str(theirs)


def test_dot_dot_is_followed_as_the_kernel_does(root_tree):
    app = _make(root_tree / "app", 0o755, NOBODY, NOBODY, directory=True)
    _make(root_tree / "secret", 0o644)
    # `..` of a directory is fixed: passing through app/ changes nothing
    assert changeable_part(str(app) + "/../secret", PROGRAM) is None
    # but after a link, `..` is the parent of where the link led (not a lexical step back)
    sub = _make(app / "sub", 0o755, directory=True)
    _make(app / "secret", 0o644)
    (root_tree / "to-sub").symlink_to(sub)
    # (a lexical step back would have said root_tree/secret, root's: None)
    assert changeable_part(str(root_tree / "to-sub") + "/../secret", PROGRAM) == str(sub)


def test_a_link_loop_is_refused(root_tree):
    (root_tree / "a").symlink_to(root_tree / "b")
    (root_tree / "b").symlink_to(root_tree / "a")
    assert changeable_part(str(root_tree / "a"), PROGRAM) is not None
