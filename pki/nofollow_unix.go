//go:build unix

package pki

import "syscall"

const noFollow = syscall.O_NOFOLLOW
