package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
)

type credentialCmd struct {
	Issue  credentialIssueCmd  `cmd:"" help:"Issue an admin credential for using fleetctl away from the appliances."`
	List   credentialListCmd   `cmd:"" help:"List the certificates the fleet accepts, with their expiry."`
	Revoke credentialRevokeCmd `cmd:"" help:"Revoke an admin credential: every port refuses it within seconds."`
}

type credentialListCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (credentialListCmd) Help() string {
	return `Lists every certificate the fleet accepts: the agents' own and the admin
credentials issued (credential issue, and the one the CLI keeps on each
appliance, local-NAME). A certificate signed by the fleet's CA but not listed
here is refused on every port.`
}

func (c *credentialListCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	certs, err := cl.Certs(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, certs)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tNAME\tEXPIRES\tISSUED\tBY\tFINGERPRINT")
	for _, ci := range certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ci.Role, ci.Name, ci.NotAfter.Local().Format(time.DateOnly),
			ci.IssuedAt.Local().Format(time.DateTime), ci.IssuedBy, ci.Fingerprint[:16])
	}
	return tw.Flush()
}

type credentialRevokeCmd struct {
	clientFlags
	Name        string `arg:"" help:"The admin whose credentials to revoke (all of them, unless --fingerprint)."`
	Fingerprint string `placeholder:"HEX" help:"Revoke only the certificate with this fingerprint (credential list -o json shows them whole)."`
}

func (credentialRevokeCmd) Help() string {
	return `Revokes an admin's credentials: the fleet forgets their certificates and every
agent refuses them within seconds, on open connections too. An agent's own
certificate is revoked by removing the member (fleetctl members remove).`
}

func (c *credentialRevokeCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.RevokeCert(ctx, client.RevokeRequest{Name: c.Name, Fingerprint: c.Fingerprint})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked %d credential(s) of %s\n", res.Revoked, c.Name)
	return nil
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := agent.IssueAdminCredential(ctx, c.DataDir, c.Name)
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
