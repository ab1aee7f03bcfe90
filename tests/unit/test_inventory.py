"""Inventory validation: every error names file:line: field."""
import textwrap

import pytest

from gitkube.api.errors import InvalidInput
from gitkube.nodes.inventory import load_inventory

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0V1d2Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1"


def write(tmp_path, body: str):
    ident = tmp_path / "id"
    ident.write_text("not really a key")
    p = tmp_path / "inventory.yaml"
    p.write_text(textwrap.dedent(body).replace("IDENT", str(ident)).replace("KEY", KEY))
    return p


def problems(p):
    with pytest.raises(InvalidInput) as e:
        load_inventory(p)
    return [str(x) for x in e.value.problems]


def test_valid_inventory_resolves_defaults(tmp_path):
    p = write(tmp_path, """\
        defaults:
          user: ops
          identityFile: IDENT
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
          labels: {zone: a}
          capacity: {cpu: "2", memory: 4Gi, pods: 20}
        """)
    [n] = load_inventory(p)
    assert (n.name, n.host, n.port, n.user, n.labels) == ("n1", "198.18.0.11", 22, "ops", {"zone": "a"})
    assert n.host_keys == (KEY,)
    assert n.capacity.memory == "4Gi"


@pytest.mark.parametrize("body,expected", [
    ("""\
        nodes:
        - name: n1
          identityFile: IDENT
          hostKeys: ["KEY"]
        """, ":2: nodes[0].address: Field required"),
    ("""\
        nodes:
        - name: n1
          identityFile: IDENT
          hostKeys: ["KEY"]
          address:
            host: 198.18.0.11
            port: 70000
        """, ":7: nodes[0].address.port: Input should be less than or equal to 65535"),
    ("""\
        defaults: {identityFile: IDENT}
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
        - name: n1
          address: {host: 198.18.0.12}
          hostKeys: ["KEY"]
        """, ":6: nodes[1].name: duplicate node name 'n1'"),
    ("""\
        defaults: {identityFile: IDENT}
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
          labels:
            "bad key!": x
        """, ":6: nodes[0].labels: invalid label key 'bad key!'"),
    ("""\
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
          identityFile: /nonexistent/id_ed25519
        """, ":5: nodes[0].identityFile: identity file /nonexistent/id_ed25519 is not readable"),
    ("""\
        defaults: {identityFile: IDENT}
        nodes:
        - name: N_1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
        """, ":3: nodes[0].name: 'N_1' is not a DNS-1123 label"),
    ("""\
        defaults: {identityFile: IDENT}
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
        """, "nodes[0].hostKeys: no host key pinned"),
    ("""\
        defaults: {identityFile: IDENT}
        nodes:
        - name: n1
          address: {host: 198.18.0.11}
          hostKeys: ["KEY"]
          colour: blue
        """, ":6: nodes[0].colour: Extra inputs are not permitted"),
])
def test_inventory_errors_name_file_line_field(tmp_path, body, expected):
    p = write(tmp_path, body)
    found = problems(p)
    assert any(f"{p}{expected}" in f or (expected in f and str(p) in f) for f in found), found
    if expected.startswith(":"):
        assert any(f.startswith(f"{p}{expected.split(' ')[0]}") for f in found), found
