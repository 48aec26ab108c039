package phases

// InitPhases are the phases of "k8scrypto init", in run order.
func InitPhases() []Phase {
	return []Phase{
		CertsPhase(),
		SAPhase(),
		EncryptionConfigPhase(),
		KubeconfigPhase(),
		KubeadmConfigPhase(),
	}
}
