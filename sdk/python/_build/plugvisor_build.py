"""A PEP 517 build backend for the plugvisor SDK, standard library only.

It exists so that `pip install ./sdk/python` works on a machine with no
network and no setuptools or wheel: the SDK has no dependencies, and its
build should not have any either. It builds a pure-Python wheel of the
`plugvisor` package (and an sdist); metadata comes from pyproject.toml.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("[project]", 1)[1].split("\n[", 1)[0]

    def field(key):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), section, re.M)
        if not m:
            raise ValueError("pyproject.toml: [project] has no %s" % key)
        return m.group(1)

    return field("name"), field("version"), field("description"), field("requires-python")


def _metadata():
    name, version, description, requires = _project()
    return name, version, (
        "Metadata-Version: 2.1\n"
        "Name: %s\nVersion: %s\nSummary: %s\nRequires-Python: %s\n" % (name, version, description, requires)
    )


def _sources():
    pkg = os.path.join(ROOT, "plugvisor")
    for fn in sorted(os.listdir(pkg)):
        if fn.endswith(".py"):
            yield "plugvisor/" + fn, os.path.join(pkg, fn)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    name, version, meta = _metadata()
    info = "%s-%s.dist-info" % (name, version)
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    with open(os.path.join(metadata_directory, info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(meta)
    return info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name, version, meta = _metadata()
    info = "%s-%s.dist-info" % (name, version)
    wheel_name = "%s-%s-py3-none-any.whl" % (name, version)
    files = [(arc, _read(src)) for arc, src in _sources()]
    files.append((info + "/METADATA", meta.encode()))
    files.append((info + "/WHEEL", b"Wheel-Version: 1.0\nGenerator: plugvisor_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"))
    files.append((info + "/top_level.txt", b"plugvisor\n"))
    record = [_record_line(arc, data) for arc, data in files] + [info + "/RECORD,,"]
    files.append((info + "/RECORD", ("\n".join(record) + "\n").encode()))
    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        for arc, data in files:
            z.writestr(zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    name, version, meta = _metadata()
    base = "%s-%s" % (name, version)
    out = base + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, out), "w:gz") as t:
        entries = [("pyproject.toml", os.path.join(ROOT, "pyproject.toml")),
                   ("_build/plugvisor_build.py", os.path.abspath(__file__))] + list(_sources())
        for arc, src in entries:
            t.add(src, arcname=base + "/" + arc)
        info = tarfile.TarInfo(base + "/PKG-INFO")
        data = meta.encode()
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return out
