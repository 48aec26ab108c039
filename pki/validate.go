package pki

import (
	"fmt"
	"net"
	"unicode/utf8"
)

// FieldError is one configuration value that cannot be used. Field is the name kubeadm's configuration gives
// it (apiServer.certSANs); the configuration loader adds the flag that also sets it, so the message is the
// same whichever source the value came from.
type FieldError struct {
	Field string
	// Value is quoted in the message when Quote is set (a value can be legitimately empty).
	Value  string
	Quote  bool
	Reason string
}

func (e *FieldError) Error() string {
	if !e.Quote {
		return e.Field + ": " + e.Reason
	}
	return fmt.Sprintf("%s: invalid value %q: %s", e.Field, e.Value, e.Reason)
}

func invalid(field, value, reason string) *FieldError {
	return &FieldError{Field: field, Value: value, Quote: true, Reason: reason}
}

// MaxSANs bounds each list of extra SANs (apiServer.certSANs, etcd.local.serverCertSANs and peerCertSANs),
// so that the certificate it goes into stays usable in a TLS handshake. The server sends its certificate in
// one handshake message: Go's crypto/tls rejects every handshake message over 64 KiB but the certificate
// message (256 KiB since it gained that exception; 64 KiB in the older Go of many kubectl and client-go
// programs still deployed), and OpenSSL's default certificate-list limit is 100 KiB. A SAN is at most 253
// bytes (a DNS name), so 128 of them plus kubeadm's own, every name as long as it can be, make an apiserver
// certificate of 34,403 bytes (RSA-2048; 34,915 with RSA-4096's longer key and signature): about half the
// smallest of those limits. TestMaxSANsCertificateFitsATLSHandshake measures it and completes a TLS
// handshake with it; 256 such SANs would pass 64 KiB.
const MaxSANs = 128

// MaxListItems bounds the other list inputs (resources to encrypt or re-encrypt, etcd endpoints): far more
// than any cluster has (Kubernetes serves about 60 built-in resources), and small enough that a runaway
// script's list is refused rather than rendered into an encryption config the apiserver must load.
const MaxListItems = 256

// CheckCount refuses a list longer than max, with its count.
func CheckCount(field string, n, max int) error {
	if n <= max {
		return nil
	}
	return &FieldError{Field: field, Reason: fmt.Sprintf("%d entries, more than the %d allowed: remove some", n, max)}
}

// CheckText refuses a path or name holding a control character (C0, DEL or C1: a newline, a tab, an escape)
// or bytes that are not UTF-8. Such a value cannot be rendered safely into the files k8scrypto writes
// (kubeconfigs, the kubeadm and encryption configs, the audit log) or shown in a terminal, and is never
// what was meant; it is refused before anything is written.
func CheckText(field, value string) error {
	for i := 0; i < len(value); {
		r, n := utf8.DecodeRuneInString(value[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			return invalid(field, value, fmt.Sprintf("byte %d is not UTF-8: give a plain path or name", i))
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return invalid(field, value, fmt.Sprintf("control character %U at byte %d (a newline, tab or escape pasted in?): give a plain path or name", r, i))
		}
		i += n
	}
	return nil
}

// CheckServerAddress refuses an advertise address other nodes cannot reach: the apiserver publishes it in
// the "kubernetes" Service's endpoints, whose validation (ValidateNonSpecialIP) refuses the unspecified,
// loopback, link-local and multicast addresses, and a broadcast address is no host's.
func CheckServerAddress(field string, ip net.IP) error {
	if why := unusableIP(ip); why != "" {
		return invalid(field, ip.String(), why+": give an address of this node that the other nodes reach")
	}
	switch {
	case ip.IsLoopback():
		return invalid(field, ip.String(), "a loopback address is reachable from this node only, and the apiserver refuses it as its advertised endpoint: give an address of this node that the other nodes reach")
	case ip.IsLinkLocalUnicast():
		return invalid(field, ip.String(), "a link-local address is not routed and the apiserver refuses it as its advertised endpoint: give an address of this node that the other nodes reach")
	}
	return nil
}

// CheckSANAddress refuses an IP SAN no server can be reached at (loopback is fine: local clients use it).
func CheckSANAddress(field string, ip net.IP) error {
	if why := unusableIP(ip); why != "" {
		return invalid(field, ip.String(), why+": give the address clients dial, or remove it")
	}
	return nil
}

func unusableIP(ip net.IP) string {
	switch {
	case ip.IsUnspecified():
		return "the unspecified address means any address; no client dials it"
	case ip.IsMulticast():
		return "a multicast address is a group, not a server"
	case ip.Equal(net.IPv4bcast):
		return "the broadcast address is no host's"
	}
	return ""
}
