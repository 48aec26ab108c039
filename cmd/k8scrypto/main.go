// Command k8scrypto bootstraps and maintains the cryptography of a Kubernetes control plane.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], defaultEnv())) }
