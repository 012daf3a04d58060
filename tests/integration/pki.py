"""Test PKI made at test time with the openssl command line tool.

make_pki(directory) creates, in DIRECTORY:

  ca.crt / ca.key                   "smtptap test CA" (the trust anchor given to smtptap)
  good.crt / good.key               CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1
  wrongname.crt / wrongname.key     CN=mail.other.net, SAN DNS:mail.other.net (signed by the CA)
  expired.crt / expired.key         CN=localhost, SAN as "good", valid 2020-01-01 .. 2021-01-01
  selfsigned.crt / selfsigned.key   CN=localhost, self-signed (not issued by any CA)
  untrusted.crt / untrusted.key     CN=localhost, issued by "smtptap other CA" (not trusted)
  other-ca.crt / other-ca.key       the second CA

EC P-256 keys keep generation fast. Nothing here reads /etc/ssl/openssl.cnf: every
openssl invocation gets its own small configuration file.
"""

import os
import subprocess
from dataclasses import dataclass

OPENSSL = os.environ.get("OPENSSL", "openssl")

CA_SUBJECT = "smtptap test CA"
OTHER_CA_SUBJECT = "smtptap other CA"

_REQ_CONF = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = {cn}
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ v3_self ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
"""

_LEAF_EXT = """\
[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = {san}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""

# "openssl ca" is the one openssl 3.0 command that can set an arbitrary notBefore and
# notAfter (x509 -req has no -not_before/-not_after before 3.4): used for "expired".
_CA_CONF = """\
[ ca ]
default_ca = testca
[ testca ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir
serial = $dir/serial
certificate = {ca_crt}
private_key = {ca_key}
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
email_in_dn = no
[ anything ]
commonName = supplied
{leaf_ext}
"""

GOOD_SAN = "DNS:localhost, IP:127.0.0.1, IP:::1"


@dataclass
class Pki:
    dir: str

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def ca(self):
        return self.path("ca.crt")

    @property
    def other_ca(self):
        return self.path("other-ca.crt")

    def cert(self, name):
        return self.path(name + ".crt")

    def key(self, name):
        return self.path(name + ".key")

    def pair(self, name):
        return self.cert(name), self.key(name)


def _run(args, cwd):
    proc = subprocess.run([OPENSSL] + args, cwd=cwd, capture_output=True, text=True,
                          timeout=30)
    if proc.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s%s" % (
            " ".join(args), proc.returncode, proc.stdout, proc.stderr))
    return proc.stdout


def _write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def _genkey(d, name):
    _run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
          "-out", name + ".key"], d)


def _make_ca(d, name, cn):
    _genkey(d, name)
    conf = _write(d, name + "-req.cnf", _REQ_CONF.format(cn=cn, san=GOOD_SAN))
    _run(["req", "-config", conf, "-new", "-x509", "-key", name + ".key",
          "-sha256", "-days", "3650", "-extensions", "v3_ca", "-out", name + ".crt"], d)


def _make_csr(d, name, cn, san):
    _genkey(d, name)
    conf = _write(d, name + "-req.cnf", _REQ_CONF.format(cn=cn, san=san))
    _run(["req", "-config", conf, "-new", "-key", name + ".key", "-out", name + ".csr"], d)


def _sign(d, name, ca, san, days=3650):
    ext = _write(d, name + "-ext.cnf", _LEAF_EXT.format(san=san))
    _run(["x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
          "-set_serial", str(abs(hash((name, ca))) % (1 << 62) + 2), "-sha256",
          "-days", str(days), "-extfile", ext, "-extensions", "leaf",
          "-out", name + ".crt"], d)


def _sign_dated(d, name, ca, san, startdate, enddate):
    db = os.path.join(d, "ca-db-" + name)
    os.makedirs(db, exist_ok=True)
    _write(db, "index.txt", "")
    _write(db, "serial", "1000\n")
    conf = _write(d, name + "-ca.cnf", _CA_CONF.format(
        dir=db, ca_crt=os.path.join(d, ca + ".crt"), ca_key=os.path.join(d, ca + ".key"),
        leaf_ext=_LEAF_EXT.format(san=san)))
    _run(["ca", "-batch", "-config", conf, "-notext", "-extensions", "leaf",
          "-startdate", startdate, "-enddate", enddate,
          "-in", name + ".csr", "-out", name + ".crt"], d)


def _selfsigned(d, name, cn, san):
    _genkey(d, name)
    conf = _write(d, name + "-req.cnf", _REQ_CONF.format(cn=cn, san=san))
    _run(["req", "-config", conf, "-new", "-x509", "-key", name + ".key",
          "-sha256", "-days", "3650", "-extensions", "v3_self", "-out", name + ".crt"], d)


def make_pki(d):
    os.makedirs(d, exist_ok=True)
    _make_ca(d, "ca", CA_SUBJECT)
    _make_ca(d, "other-ca", OTHER_CA_SUBJECT)

    _make_csr(d, "good", "localhost", GOOD_SAN)
    _sign(d, "good", "ca", GOOD_SAN)

    _make_csr(d, "wrongname", "mail.other.net", "DNS:mail.other.net")
    _sign(d, "wrongname", "ca", "DNS:mail.other.net")

    _make_csr(d, "expired", "localhost", GOOD_SAN)
    _sign_dated(d, "expired", "ca", GOOD_SAN, "20200101000000Z", "20210101000000Z")

    _selfsigned(d, "selfsigned", "localhost", GOOD_SAN)

    _make_csr(d, "untrusted", "localhost", GOOD_SAN)
    _sign(d, "untrusted", "other-ca", GOOD_SAN)

    pki = Pki(d)
    _self_check(pki)
    return pki


def _verify(pki, name, ca):
    proc = subprocess.run([OPENSSL, "verify", "-CAfile", ca, pki.cert(name)],
                          capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def _self_check(pki):
    """Fail loudly if the PKI does not have the properties the tests rely on."""
    rc, out = _verify(pki, "good", pki.ca)
    assert rc == 0, "good certificate does not verify against the test CA: " + out
    rc, out = _verify(pki, "wrongname", pki.ca)
    assert rc == 0, "wrongname certificate does not verify against the test CA: " + out
    rc, out = _verify(pki, "expired", pki.ca)
    assert rc != 0 and "expired" in out, "expired certificate is not expired: " + out
    rc, out = _verify(pki, "selfsigned", pki.ca)
    assert rc != 0 and "self-signed" in out, "selfsigned is not self-signed: " + out
    rc, out = _verify(pki, "untrusted", pki.ca)
    assert rc != 0, "untrusted certificate verifies against the test CA: " + out
    rc, out = _verify(pki, "untrusted", pki.other_ca)
    assert rc == 0, "untrusted certificate does not verify against its own CA: " + out


if __name__ == "__main__":
    import sys
    import tempfile
    target = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="smtptap-pki-")
    make_pki(target)
    print(target)
