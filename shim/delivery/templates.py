"""--template SRC:DEST: secrets into a config file of the user's own shape.

The language is Jinja2 in its immutable sandbox, imported only when a template is given.
`secret("REF")` takes a reference of any syntax shim accepts, written as a literal string, so
every reference of every template is known before anything is fetched: they join the
environment's references in the one resolution (one read per secret). `env.NAME` is the
program's resolved environment.

Nothing a template writes comes out unescaped by accident: `secret()` and `env.NAME` give an
opaque value that only a filter turns into text (`tojson`, `shquote`, `urlencode`, `b64encode`,
`b64decode`, `yaml`, `xml`, `properties`, or `raw` when the template says explicitly that the value goes in
as it is). Writing one without a filter is an error (65) naming the file and line.

All templates are rendered in memory first; only when every one succeeded are they written
(atomically, mode --template-mode, owned by the program's user), so a failure writes nothing.

Under --watch the templates are loaded here once, before the program starts, and rendered again
by each tick's helper (a fork: it has them, parsed, in its memory), which hands back the texts;
the supervisor rewrites only the DESTs whose text changed. Each DEST's directory is opened once,
at the check, and every write goes through that descriptor, so a program that can change the
path later cannot redirect a write made as root.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shlex
import traceback
from urllib.parse import quote

from shim.delivery.asfiles import filesystem_type   # the same mount check as --as-files
from shim.delivery.atomic import DIRECTORY_FLAGS, still_in_place, write_atomically
from shim.tools.errors import ConfigError, ShimError, UnusableValue, UsageError
from shim.tools.records import record
from shim.syntax.refs import Reference, parse_reference
from shim.tools.safe_read import read_capped

MAX_TEMPLATE_BYTES = 1024 * 1024
FILESYSTEMS = ("tmpfs", "ramfs")


@record
class TemplateSpec:
    source: str          # the template, in the image
    destination: str     # the file written from it

    @property
    def name(self) -> str:
        return os.path.basename(self.source)


def parse_specs(texts) -> tuple[TemplateSpec, ...]:
    """SRC:DEST pairs (64 when a pair is not two absolute paths, or a DEST repeats)."""
    specs, destinations = [], set()
    for text in texts:
        source, separator, destination = text.partition(":")
        if not separator or not source.startswith("/") or not destination.startswith("/") \
                or ":" in destination:
            raise UsageError(f"--template {text!r} is not SRC:DEST",
                             hint="write two absolute paths, e.g. "
                                  "/etc/nginx/nginx.conf.tmpl:/run/nginx/nginx.conf")
        if destination in destinations:
            raise UsageError(f"--template: {destination} is the destination of two templates",
                             hint="give each template its own DEST")
        destinations.add(destination)
        specs.append(TemplateSpec(source, destination))
    return tuple(specs)


class Secret:
    """A value from `secret()` or `env`: only a filter turns it into text."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __str__(self):
        raise _Unescaped()

    __html__ = __str__

    def __repr__(self) -> str:
        return "<secret>"   # a traceback or an error message never shows the value


class _Unescaped(Exception):
    pass


class Template:
    def __init__(self, spec: TemplateSpec, compiled, references: dict[str, Reference]):
        self.spec = spec
        self.compiled = compiled
        self.references = references      # the literal text of each secret("...") -> parsed


class Templates:
    """Every --template of a run: loaded, their references known, rendered, written."""

    def __init__(self, templates: list[Template], mode: int, allow_disk: bool,
                 directories: dict[str, int]):
        self.templates = templates
        self.mode = mode
        self.allow_disk = allow_disk
        self.directories = directories   # DEST -> descriptor of its directory, opened at the check
        self.written: dict[str, bytes] = {}   # DEST -> what this run last wrote there

    def references(self) -> list[Reference]:
        return [reference for template in self.templates
                for reference in template.references.values()]

    def render(self, values: dict[str, object], environment: dict[str, str]) -> dict[str, bytes]:
        """{DEST: content}; `values` maps each reference's text to its value or ShimError."""
        rendered = {}
        for template in self.templates:
            rendered[template.spec.destination] = _render(template, values, environment)
        return rendered

    def write(self, rendered: dict[str, bytes], uid: int | None, gid: int | None) -> list[str]:
        """Write each DEST whose content differs from what this run last wrote there (all of
        them the first time); the DESTs written."""
        changed = sorted(destination for destination, content in rendered.items()
                         if self.written.get(destination) != content)
        for destination in changed:
            directory = self.directories[destination]
            try:
                still_in_place(os.path.dirname(destination), directory, follow_symlinks=True)
                write_atomically(os.path.basename(destination), rendered[destination],
                                 mode=self.mode, uid=uid, gid=gid, directory_fd=directory)
            except OSError as error:
                raise ConfigError(f"--template {destination}: cannot write it ({error.strerror})",
                                  hint="check the directory's owner and free space, and that "
                                       "nothing replaced it") from None
            self.written[destination] = rendered[destination]
        return changed


def from_options(options) -> Templates | None:
    specs = options.templates
    if not specs:
        return None
    environment = _environment()
    templates, directories = [], {}
    for spec in specs:
        directories[spec.destination] = _check_destination(spec.destination,
                                                           options.template_allow_disk)
        templates.append(_load(spec, environment))
    return Templates(templates, options.template_mode, options.template_allow_disk, directories)


def _check_destination(destination: str, allow_disk: bool) -> int:
    """A descriptor of DEST's directory, once it is known to be fit for secrets."""
    directory = os.path.dirname(destination)
    try:
        descriptor = os.open(directory, DIRECTORY_FLAGS)
    except NotADirectoryError:
        raise ConfigError(f"--template {destination}: {directory} is not a directory",
                          hint="give a DEST inside a directory") from None
    except OSError as error:
        raise ConfigError(f"--template {destination}: its directory {directory}: "
                          f"{error.strerror}", hint="create it (a tmpfs mount) first") from None
    try:
        _check_directory(destination, directory, os.fstat(descriptor), allow_disk)
    except ConfigError:
        os.close(descriptor)
        raise
    return descriptor


def _check_directory(destination: str, directory: str, info: os.stat_result,
                     allow_disk: bool) -> None:
    # Whoever may write the directory could swap the file between our write and the program's
    # read: only its owner, and a group that is root's, may.
    if info.st_mode & 0o002 or (info.st_mode & 0o020 and info.st_gid != 0):
        raise ConfigError(f"--template {destination}: {directory} is writable by other users, "
                          "who could replace the file",
                          hint="use a directory only root or shim's user may write (chmod go-w)")
    if allow_disk:
        return
    fstype = filesystem_type(info.st_dev)
    if fstype not in FILESYSTEMS:
        raise ConfigError(f"--template {destination}: {directory} is on "
                          f"{fstype or 'an unknown filesystem'}, not tmpfs or ramfs: secrets "
                          "would reach the disk",
                          hint="use /dev/shm or a tmpfs mount, or --template-allow-disk")


def _environment():
    try:
        from jinja2 import StrictUndefined  # lazy: only with --template
        from jinja2.sandbox import ImmutableSandboxedEnvironment  # lazy: only with --template
    except ImportError:
        raise ConfigError("--template needs Jinja2: install shim-secrets[templates]",
                          hint="install the extra, or drop --template") from None

    environment = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                                keep_trailing_newline=True, finalize=_finalize,
                                                cache_size=0)
    environment.filters.clear()   # only the filters below: each one knows what a Secret is
    environment.filters.update(FILTERS)
    environment.globals.clear()
    return environment


def _load(spec: TemplateSpec, environment) -> Template:
    from jinja2 import TemplateSyntaxError, nodes  # lazy: only with --template

    content = read_capped(spec.source, cap=MAX_TEMPLATE_BYTES, what="template",
                          size_text="1 MiB")
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise UnusableValue(f"template {spec.source} is not UTF-8 text",
                            hint="save it as UTF-8") from None
    try:
        tree = environment.parse(text, name=spec.source, filename=spec.source)
        # Compiled with the file's name, so an error while rendering names its line.
        code = environment.compile(tree, name=spec.source, filename=spec.source)
        compiled = environment.template_class.from_code(environment, code,
                                                        environment.make_globals(None))
    except TemplateSyntaxError as error:
        raise UnusableValue(f"template {spec.source} line {error.lineno}: "
                            f"{error.message.rstrip('.')}",
                            hint="fix the template's syntax") from None
    references = {}
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "secret"):
            continue
        arguments = call.args
        if len(arguments) != 1 or call.kwargs or not isinstance(arguments[0], nodes.Const) \
                or not isinstance(arguments[0].value, str):
            raise UnusableValue(f"template {spec.source} line {call.lineno}: secret() takes one "
                                "literal reference", hint='write secret("vault:secret/data/app#key")')
        text_reference = arguments[0].value
        try:
            references[text_reference] = parse_reference(text_reference)
        except UsageError as error:
            raise UsageError(f"template {spec.source} line {call.lineno}: {error.message}",
                             hint=error.hint) from None
    return Template(spec, compiled, references)


def _render(template: Template, values: dict[str, object], environment: dict[str, str]) -> bytes:
    from jinja2 import TemplateError, UndefinedError  # lazy: only with --template
    from jinja2.exceptions import SecurityError  # lazy: only with --template

    source = template.spec.source

    def secret(text):
        value = values.get(text)
        if isinstance(value, ShimError):
            raise value
        return Secret(value)

    context = {"secret": secret, "env": {name: Secret(value) for name, value in environment.items()}}
    try:
        return template.compiled.render(context).encode("utf-8")
    except ShimError:
        raise
    except _Unescaped as error:
        raise UnusableValue(f"template {source} line {_line(error, source)}: a secret is written "
                            "without an escaping filter",
                            hint="add one (| tojson, | shquote, | urlencode, | yaml, | xml, "
                                 "| properties, | b64encode), or | raw to write it as it is") from None
    except _FilterRefused as error:
        raise UnusableValue(f"template {source} line {_line(error, source)}: {error}",
                            hint="check the filter and the secret's form") from None
    except (UndefinedError, SecurityError) as error:
        # Their messages name attributes and names of the template, never a value.
        raise UnusableValue(f"template {source} line {_line(error, source)}: "
                            f"{error.message.rstrip('.')}", hint="fix the template") from None
    except (TemplateError, Exception) as error:
        raise UnusableValue(f"template {source} line {_line(error, source)}: "
                            f"{type(error).__name__} while rendering",
                            hint="fix the template") from None


def _line(error: BaseException, source: str) -> str:
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename == source:
            line = frame.lineno
    return str(line) if line is not None else "?"


def _finalize(value):
    if isinstance(value, Secret):
        raise _Unescaped()
    return value


class _FilterRefused(Exception):
    pass


def _text(value) -> str:
    if isinstance(value, Secret):
        return value.value
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)) or value is None:
        return str(value)
    if hasattr(value, "_undefined_name"):
        str(value)   # jinja2's StrictUndefined: raises the UndefinedError naming the name
    raise _FilterRefused(f"a filter was given a {type(value).__name__}, not text")


def _tojson(value) -> str:
    return json.dumps(_text(value), ensure_ascii=False)


def _shquote(value) -> str:
    return shlex.quote(_text(value))


def _urlencode(value) -> str:
    return quote(_text(value), safe="")


def _b64encode(value) -> str:
    return base64.b64encode(_text(value).encode()).decode()


def _b64decode(value) -> Secret:
    try:
        decoded = base64.b64decode(_text(value), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise _FilterRefused("b64decode: the value is not base64 of UTF-8 text") from None
    return Secret(decoded)   # still a secret: it needs its own escaping filter


def _yaml(value) -> str:
    # A JSON string is a YAML double-quoted scalar: every character escaped the same way.
    return json.dumps(_text(value), ensure_ascii=True)


# xml.sax.saxutils.escape would do, but importing it loads urllib.request and http.client
# (about 25 ms at every start with a template).
_XML_ENTITIES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&apos;"))


def _xml(value) -> str:
    text = _text(value)
    for char, entity in _XML_ENTITIES:   # "&" first, so no entity is escaped twice
        text = text.replace(char, entity)
    return text


def _properties(value) -> str:
    # java.util.Properties' escapes: a value read back by Properties.load() is the secret,
    # whatever it holds; non-ASCII as \uXXXX, right for ISO-8859-1 and UTF-8 readers alike.
    out = []
    for index, char in enumerate(_text(value)):
        if char in "\\=:#!":
            out.append("\\" + char)
        elif char == " " and index == 0:
            out.append("\\ ")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif ord(char) < 0x20 or ord(char) > 0x7e:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def _raw(value) -> str:
    return _text(value)


FILTERS = {"tojson": _tojson, "shquote": _shquote, "urlencode": _urlencode,
           "b64encode": _b64encode, "b64decode": _b64decode, "yaml": _yaml, "xml": _xml,
           "properties": _properties, "raw": _raw}
