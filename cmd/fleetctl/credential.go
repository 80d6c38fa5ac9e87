package main

import (
	"fmt"

	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/pki"
)

type credentialCmd struct {
	Issue credentialIssueCmd `cmd:"" help:"Issue an admin credential for using fleetctl away from the appliances."`
}

type credentialIssueCmd struct {
	DataDir string `name:"data-dir" required:"" env:"FLEETCTL_DATA_DIR" placeholder:"DIR" help:"Data dir of an agent of the fleet (it holds the fleet's CA)."`
	Name    string `required:"" help:"Who the credential is for, as it appears in the record of applies (e.g. alice)."`
	Out     string `short:"o" required:"" placeholder:"FILE" help:"File to write the credential to (mode 0600); - for standard output."`
}

func (credentialIssueCmd) Help() string {
	return `Issues an admin credential: one PEM file with the fleet's CA certificate, a
client certificate and its key. On another machine, use it with any agent:

  fleetctl credential issue --data-dir /var/lib/fleetctl --name alice -o alice.pem
  fleetctl status --server nas1.example:7400 --credential alice.pem

Admin credentials reach the API only; they cannot take part in Raft.
Keep the file secret: it grants control of the fleet.`
}

func (c *credentialIssueCmd) Run(e env) error {
	if !nameOK(c.Name) {
		return fmt.Errorf("--name %q: use lowercase letters, digits and '-'", c.Name)
	}
	b, err := agent.IssueAdminCredential(c.DataDir, c.Name)
	if err != nil {
		return err
	}
	if c.Out == "-" {
		_, err := e.stdout.Write(b)
		return err
	}
	if err := pki.WriteFile(c.Out, b); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "wrote admin credential for %s to %s\n", c.Name, c.Out)
	return nil
}

func nameOK(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
