package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// defaultKeyNames are the files `ssh-add` with no argument adds from
// ~/.ssh, in its order.
var defaultKeyNames = []string{"id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk", "id_dsa"}

// defaultKeyFiles returns the default key files that exist in home/.ssh,
// as ssh-add does when it is given none, and says on w which it found.
func defaultKeyFiles(home string, w io.Writer) ([]string, error) {
	dir := filepath.Join(home, ".ssh")
	var found, names []string
	for _, n := range defaultKeyNames {
		p := filepath.Join(dir, n)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			found = append(found, p)
			names = append(names, n)
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no KEYFILE given and none of the default keys exists in %s (%s): name the key file to add",
			dir, strings.Join(defaultKeyNames, ", "))
	}
	fmt.Fprintf(w, "No KEYFILE given: adding the default keys found in %s: %s\n", dir, strings.Join(names, ", "))
	return found, nil
}

// addKeyFiles is the add command's KEYFILEs: those given, else the
// default ones.
func addKeyFiles(args []string, w io.Writer) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("no KEYFILE given and no home directory to find the default keys in: %w", err)
	}
	return defaultKeyFiles(home, w)
}

// depthValue is --max-forward-depth: a number of hops, 0 or more. Not
// given, it is -1 in the int it sets ("as the policy says"), and help
// shows no "(default -1)": -1 is not a value anyone can give.
type depthValue struct{ p *int }

func newDepthValue(p *int) depthValue {
	*p = -1
	return depthValue{p}
}

func (d depthValue) String() string {
	if d.p == nil || *d.p < 0 {
		return ""
	}
	return strconv.Itoa(*d.p)
}

func (d depthValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return errors.New("give a number of hops, 0 or more")
	}
	*d.p = n
	return nil
}

func (d depthValue) Type() string { return "int" }
