package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/parzelle/parzelle/console"
)

// cmdConsole prints the argon2id hash of a password read from standard
// input, for a console user in the node configuration.
func cmdConsole(args []string) error {
	if len(args) != 1 || args[0] != "hash-password" {
		return errors.New("usage: parzelle console hash-password < password-file")
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("read the password from standard input: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if len(password) < 12 {
		return errors.New("the password has fewer than 12 characters; choose a longer one")
	}
	hash, err := console.HashPassword(password)
	if err != nil {
		return err
	}
	fmt.Println(hash)
	return nil
}
