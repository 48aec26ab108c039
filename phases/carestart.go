package phases

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The components the CA advice names, in the order a control plane comes back. The structured fields
// (CARotateResult.Restarts, CARenewResult.Restarts) hold these words; the e2e suite restarts by them.
const (
	CompEtcd              = "etcd" // every member, one at a time
	CompAPIServer         = "kube-apiserver"
	CompControllerManager = "kube-controller-manager"
	CompScheduler         = "kube-scheduler"
	CompKubelet           = "kubelet"
)

var compOrder = []string{CompEtcd, CompAPIServer, CompControllerManager, CompScheduler, CompKubelet}

// What reads which CA file, as v1.37 and etcd v3.7 do (checked in their source, and live by e2e TestCALife):
//   - kube-apiserver reloads --client-ca-file (ca.crt) and --requestheader-client-ca-file
//     (front-proxy-ca.crt) by itself (dynamiccertificates.DynamicFileCAContent: it watches the file and
//     re-reads it at least every minute), and likewise its serving pair --tls-cert-file/--tls-private-key-file,
//     --proxy-client-cert-file (the aggregator's dynamic content) and --kubelet-client-certificate
//     (ReloadTLSFiles). It reads --etcd-cafile once, at start (etcd's transport.TLSInfo.ClientConfig builds
//     RootCAs once); its --etcd-certfile pair is re-read at every new connection (GetClientCertificate).
//   - etcd reads --trusted-ca-file and --peer-trusted-ca-file once, at start (TLSInfo.ServerConfig builds
//     ClientCAs once), and re-reads its own serving and peer pairs at every handshake (GetCertificate).
//   - kube-controller-manager reads --root-ca-file (what it publishes as kube-root-ca.crt) and its
//     kubeconfig at start; its CSR signer reloads --cluster-signing-cert-file/--cluster-signing-key-file
//     (dynamiccertificates.NewDynamicServingContentFromFiles), but a file of more than one certificate is
//     refused, hence CASignerFile.
//   - kube-scheduler and the kubelets read their kubeconfig's certificate-authority-data at start.
//
// A component that holds a CA certificate in memory keeps verifying what that CA's key signed until that
// certificate's NotAfter: after "ca renew" (same key) a restart for it can wait until then.

// orderComps sorts components in compOrder and drops duplicates.
func orderComps(cs []string) []string {
	var out []string
	for _, c := range compOrder {
		if slices.Contains(cs, c) {
			out = append(out, c)
		}
	}
	return out
}

// caStepRestarts are the components that must restart after a rotation step before the next step
// (now), and those that should restart to stop trusting the old CA but whose delay fails no request
// (later).
func caStepRestarts(name, step string) (now, later []string) {
	switch name {
	case "etcd-ca":
		switch step {
		case "prepare":
			return []string{CompEtcd, CompAPIServer}, nil
		case "promote":
			return nil, nil
		}
		return []string{CompEtcd}, []string{CompAPIServer}
	case "front-proxy-ca":
		return nil, nil
	}
	if step == "prune" {
		return []string{CompControllerManager}, []string{CompScheduler, CompKubelet}
	}
	return []string{CompControllerManager, CompScheduler, CompKubelet}, nil
}

// caRestart says, for a step's advice, what must restart, what reloads by itself and what may wait. For
// the cluster CA it also says where kube-controller-manager's --cluster-signing-cert-file must point: at
// CASignerFile while ca.crt is a bundle (after prepare and promote), at ca.crt again after prune.
func caRestart(name, step, certDir string) string {
	switch name {
	case "etcd-ca":
		switch step {
		case "prepare":
			return "every etcd member, one at a time (each healthy before the next, so etcd keeps quorum): they read etcd/ca.crt (--trusted-ca-file, --peer-trusted-ca-file) only at start; " +
				"then kube-apiserver, one at a time on each node: it reads --etcd-cafile only at start and must trust the new etcd CA before promote"
		case "promote":
			return "nothing: the etcd members re-read their serving and peer certificates, and kube-apiserver its --etcd-certfile pair, at every new connection, and all of them already trust both etcd CAs"
		}
		return "every etcd member, one at a time, so that they refuse certificates of the old etcd CA (they read etcd/ca.crt only at start); " +
			"kube-apiserver, one at a time on each node, at a convenient time: no request fails meanwhile, but until it restarts it still trusts the old etcd CA (--etcd-cafile is read at start)"
	case "front-proxy-ca":
		return "nothing: kube-apiserver reloads front-proxy-ca.crt (--requestheader-client-ca-file) and front-proxy-client (--proxy-client-cert-file) by itself within a minute; wait that minute before the next step"
	}
	signing := filepath.Join(certDir, CASignerFile) + " (it signs only with a file of one certificate, and ca.crt is a bundle until prune)"
	if step == "prune" {
		signing = filepath.Join(certDir, "ca.crt") + " again (" + CASignerFile + " is removed)"
	}
	cm := "kube-controller-manager with --cluster-signing-cert-file=" + signing + "; it publishes ca.crt as kube-root-ca.crt only at start"
	reload := "kube-apiserver needs no restart: it reloads ca.crt (--client-ca-file)"
	if step == "promote" {
		reload += " and its re-issued serving and kubelet-client certificates"
	}
	reload += " by itself within a minute; wait that minute before the next step"
	if step == "prune" {
		return cm + "; " + reload + "; kube-scheduler and the kubelets at a convenient time: no request fails meanwhile, but until they restart they still trust the old CA"
	}
	return cm + ", then kube-scheduler and every kubelet and client, on its node's kubeconfigs as this step left them (they read certificate-authority-data and their client certificate at start); " + reload
}

// caRenewAdvice says, for one renewed CA, what picks the renewed certificate up by itself, what must
// restart now and what may restart at a convenient time before the old certificate's end. A CA that had
// already expired leaves nothing to wait for: every component holding it fails now.
func caRenewAdvice(c RenewedCA, now time.Time) (text string, restartNow []string) {
	expired := !now.Before(c.OldNotAfter)
	by := c.OldNotAfter.UTC().Format("2006-01-02 15:04 MST")
	switch c.Name {
	case "front-proxy-ca":
		return "front-proxy-ca: nothing to restart, kube-apiserver reloads front-proxy-ca.crt (--requestheader-client-ca-file) by itself within a minute", nil
	case "etcd-ca":
		if expired {
			return "etcd-ca: it had expired, restart now every etcd member, one at a time, then kube-apiserver (they read it only at start and hold the expired certificate)", []string{CompEtcd, CompAPIServer}
		}
		return "etcd-ca: the etcd members and kube-apiserver (--etcd-cafile) read it only at start and keep verifying with the old certificate until it ends on " + by +
			": restart every etcd member, one at a time, then kube-apiserver, one node at a time, at a convenient time before then", nil
	}
	if expired {
		return "ca: it had expired, restart now kube-controller-manager, kube-scheduler and every kubelet (they hold the expired certificate); kube-apiserver reloads ca.crt (--client-ca-file) by itself within a minute",
			[]string{CompControllerManager, CompScheduler, CompKubelet}
	}
	return "ca: kube-apiserver reloads ca.crt (--client-ca-file) by itself and kube-controller-manager's signer its signing certificate; restart kube-controller-manager now so that it publishes the renewed certificate as kube-root-ca.crt (it reads --root-ca-file only at start); " +
		"kube-scheduler, the kubelets and every client holding the old certificate keep working until it ends on " + by + ": restart them with the copied kubeconfigs at a convenient time before then", []string{CompControllerManager}
}

// caRenewNext is the renew result's advice over every renewed CA, and the components to restart now.
func caRenewNext(cas []RenewedCA, now time.Time) (string, []string) {
	parts := []string{"copy the renewed files to every control-plane node"}
	var restarts []string
	for _, c := range cas {
		t, r := caRenewAdvice(c, now)
		parts = append(parts, t)
		restarts = append(restarts, r...)
	}
	parts = append(parts, fmt.Sprintf("certificates the CA signed stay valid (%q renews those its old end date had cut short)", "k8scrypto renew certs"))
	return strings.Join(parts, "; "), orderComps(restarts)
}
