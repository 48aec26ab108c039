// Package suggest finds the name an operator most likely meant, for "did you mean" hints.
package suggest

import "strings"

// Distance is the Levenshtein distance between a and b.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// Nearest returns the candidates closest to word (case and separators ignored), at most a third of its
// length away (and at least 2), nearest first; none when nothing is close.
func Nearest(word string, candidates []string) []string {
	norm := func(s string) string { return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s)) }
	w := norm(word)
	limit := max(2, len(w)/3)
	best, out := limit+1, []string(nil)
	for _, c := range candidates {
		d := Distance(w, norm(c))
		if strings.HasPrefix(norm(c), w) && len(w) >= 3 {
			d = min(d, 1)
		}
		switch {
		case d < best:
			best, out = d, []string{c}
		case d == best:
			out = append(out, c)
		}
	}
	return out
}
