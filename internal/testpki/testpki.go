// Package testpki makes real X.509 certificates for tests: a CA, a
// server certificate for 127.0.0.1 and localhost, a client certificate it
// signed and a self-signed stranger, as PEM files and tls.Certificates.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// PKI is a CA with a server and a client certificate, written to Dir as
// ca.pem, server.pem/server.key, client.pem/client.key and
// stranger.pem/stranger.key (a self-signed client certificate).
type PKI struct {
	Dir              string
	CA               *x509.CertPool
	Client, Stranger tls.Certificate

	// issue signs a certificate with the CA; write stores it as NAME.pem/.key.
	issue func(tmpl *x509.Certificate, parent *x509.Certificate, pk, signer *ecdsa.PrivateKey) *x509.Certificate
	write func(name string, c *x509.Certificate, k *ecdsa.PrivateKey) tls.Certificate
	key   func() *ecdsa.PrivateKey
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// ClientFor issues a client certificate signed by the CA with Common Name
// cn and the DNS SANs given, written as FILE.pem and FILE.key (FILE is cn
// unless file is set). It returns the two paths.
func (p *PKI) ClientFor(file, cn string, sans ...string) (cert, key string) {
	if file == "" {
		file = cn
	}
	k := p.key()
	p.write(file, p.issue(&x509.Certificate{Subject: pkix.Name{CommonName: cn}, DNSNames: sans,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, p.ca, k, p.caKey), k)
	return p.File(file + ".pem"), p.File(file + ".key")
}

// New writes a fresh PKI to a temporary folder of t.
func New(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	serial := int64(1)
	issue := func(tmpl *x509.Certificate, parent *x509.Certificate, pk *ecdsa.PrivateKey, signer *ecdsa.PrivateKey) *x509.Certificate {
		serial++
		tmpl.SerialNumber = big.NewInt(serial)
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &pk.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(name string, c *x509.Certificate, k *ecdsa.PrivateKey) tls.Certificate {
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cp := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
		kp := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
		if err := os.WriteFile(filepath.Join(dir, name+".pem"), cp, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), kp, 0o600); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(cp, kp)
		if err != nil {
			t.Fatal(err)
		}
		return pair
	}
	caKey := key()
	ca := issue(&x509.Certificate{Subject: pkix.Name{CommonName: "plugvisor test CA"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, caKey, caKey)
	write("ca", ca, caKey)
	srvKey := key()
	write("server", issue(&x509.Certificate{Subject: pkix.Name{CommonName: "plugvisor"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, srvKey, caKey), srvKey)
	cliKey := key()
	client := write("client", issue(&x509.Certificate{Subject: pkix.Name{CommonName: "ops"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}, ca, cliKey, caKey), cliKey)
	// Self-signed: a client certificate no configured CA vouches for.
	strKey := key()
	stranger := write("stranger", issue(&x509.Certificate{Subject: pkix.Name{CommonName: "stranger"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		IsCA: true, BasicConstraintsValid: true}, nil, strKey, strKey), strKey)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &PKI{Dir: dir, CA: pool, Client: client, Stranger: stranger,
		issue: issue, write: write, key: key, ca: ca, caKey: caKey}
}

// File is the path of one of the PKI's files.
func (p *PKI) File(name string) string { return filepath.Join(p.Dir, name) }
