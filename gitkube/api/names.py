"""Which names, label keys and label values Kubernetes accepts (apimachinery's validation rules)."""
from __future__ import annotations

import re

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
DNS1035_LABEL = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_HAS_LETTER = re.compile(r"[a-z]")
ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

LABEL_MAX = 63
SUBDOMAIN_MAX = 253


def _length_and_pattern(value: str, max_len: int, pattern: re.Pattern, rule: str) -> list[str]:
    errs = []
    if len(value) > max_len:
        errs.append(f"must be no more than {max_len} characters")
    if not pattern.match(value):
        errs.append(rule)
    return errs


def dns1123_label(value: str) -> list[str]:
    """Decides whether `value` is a DNS-1123 label (container, volume, namespace names); returns the reasons if not."""
    return _length_and_pattern(value, LABEL_MAX, DNS1123_LABEL,
                               "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                               "and must start and end with an alphanumeric character")


def dns1123_subdomain(value: str) -> list[str]:
    """Decides whether `value` is a DNS-1123 subdomain (most object names); returns the reasons if not."""
    return _length_and_pattern(value, SUBDOMAIN_MAX, DNS1123_SUBDOMAIN,
                               "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                               "'-' or '.', and must start and end with an alphanumeric character")


def dns1035_label(value: str) -> list[str]:
    """Decides whether `value` is a DNS-1035 label (Service names); returns the reasons if not."""
    return _length_and_pattern(value, LABEL_MAX, DNS1035_LABEL,
                               "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                               "start with an alphabetic character, and end with an alphanumeric character")


def iana_svc_name(value: str) -> list[str]:
    """Decides whether `value` is an IANA service name (container port names); returns the reasons if not."""
    errs = []
    if len(value) > 15:
        errs.append("must be no more than 15 characters")
    if not _IANA_SVC_NAME.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        errs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def qualified_name(value: str) -> list[str]:
    """Decides whether `value` is a label or annotation key (`[prefix/]name`); returns the reasons if not."""
    prefix, slash, name = value.rpartition("/")
    if not slash:
        prefix, name = "", value
    errs = []
    if slash and not prefix:
        errs.append("prefix part must be non-empty")
    elif prefix:
        errs.extend("prefix part " + e for e in dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > LABEL_MAX:
            errs.append(f"name part must be no more than {LABEL_MAX} characters")
        if not _QUALIFIED_NAME.match(name):
            errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', "
                        "and must start and end with an alphanumeric character")
    return errs


def label_value(value: str) -> list[str]:
    """Decides whether `value` is a valid label value (empty, or up to 63 name characters); returns the reasons if not."""
    errs = []
    if len(value) > LABEL_MAX:
        errs.append(f"must be no more than {LABEL_MAX} characters")
    if value and not _QUALIFIED_NAME.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                    "and must start and end with an alphanumeric character")
    return errs


# Docker's image reference grammar (github.com/distribution/reference, regexp.go):
#   reference := name [ ":" tag ] [ "@" digest ];  name := [domain "/"] path-component ["/" path-component]*
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_IMAGE_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"^(?P<name>{_IMAGE_NAME})(?::{_TAG})?(?:@{_DIGEST})?$", re.ASCII)
IMAGE_NAME_MAX = 255


def image_reference(value: str) -> list[str]:
    """Decides whether `value` is a Docker image reference (`[registry[:port]/]path[:tag][@digest]`, the
    distribution/reference grammar); returns the reasons if not. Shell characters, spaces and upper-case
    repository paths are refused here instead of failing on the node for ever."""
    m = IMAGE_REFERENCE.match(value)
    if m is None:
        return ["must be a valid image reference ([registry[:port]/]name[:tag][@digest]: lower-case name "
                "components of letters, digits and single separators '.', '_', '__' or '-')"]
    if len(m.group("name")) > IMAGE_NAME_MAX:
        return [f"repository name must not be more than {IMAGE_NAME_MAX} characters"]
    return []


def host_path(value: str) -> list[str]:
    """Decides whether `value` is an acceptable hostPath path: absolute, and without a '..' segment (as
    Kubernetes' validatePathNoBacksteps: `/tmp/../etc` would mount the host's /etc)."""
    errs = []
    if not value.startswith("/"):
        errs.append("must be an absolute path")
    if ".." in value.replace("\\", "/").split("/"):
        errs.append("must not contain '..'")
    return errs
