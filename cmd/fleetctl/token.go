package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/fleetctl/fleetctl/client"
)

type tokenCmd struct {
	Create tokenCreateCmd `cmd:"" help:"Make a join token for new appliances (shown once)."`
	List   tokenListCmd   `cmd:"" help:"List the join tokens in force (never their secrets)."`
	Revoke tokenRevokeCmd `cmd:"" help:"Revoke a join token."`
}

type tokenCreateCmd struct {
	clientFlags
	outputFlag  `embed:""`
	TTL         time.Duration `name:"ttl" default:"24h" help:"How long the token works (at most 720h)."`
	Description string        `placeholder:"TEXT" help:"What the token is for, shown by 'token list'."`
}

func (tokenCreateCmd) Help() string {
	return `Makes a join token: a new appliance joins with it (fleetctl agent --join ADDR
--token-file FILE). The token works until it expires (--ttl, 24h by default),
is revoked, or any member is removed (members remove revokes every token).
It pins the fleet's CA, so a joiner cannot be fooled into joining another
fleet. The fleet keeps only a hash of its secret: this is the only time it is
shown. Keep it secret and out of argv.`
}

func (c *tokenCreateCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	res, err := cl.CreateToken(ctx, client.TokenRequest{TTL: c.TTL.String(), Description: c.Description})
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, res)
	}
	fmt.Fprintln(e.stdout, res.Token)
	fmt.Fprintf(e.stderr, "join token %s, valid until %s\n", res.Info.ID, res.Info.Expires.Local().Format(time.DateTime))
	return nil
}

type tokenListCmd struct {
	clientFlags
	outputFlag `embed:""`
}

func (tokenListCmd) Help() string {
	return `Lists the join tokens in force: ID, expiry, who made it, what for. The
secrets are never shown again: the fleet keeps only their hashes. Expired
tokens are not listed.`
}

func (c *tokenListCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	tokens, err := cl.Tokens(ctx)
	if err != nil {
		return err
	}
	if c.Output == "json" {
		return writeJSONOut(e.stdout, tokens)
	}
	if len(tokens) == 0 {
		fmt.Fprintln(e.stdout, "No join token is in force; make one with 'fleetctl token create'.")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tEXPIRES\tCREATED BY\tDESCRIPTION")
	for _, t := range tokens {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Expires.Local().Format(time.DateTime), t.CreatedBy, t.Description)
	}
	return tw.Flush()
}

type tokenRevokeCmd struct {
	clientFlags
	ID string `arg:"" help:"The token's ID, as 'token list' shows it."`
}

func (tokenRevokeCmd) Help() string {
	return `Revokes a join token by its ID (token list): no appliance joins with it from
now on. Appliances that joined with it stay members. Removing a member
revokes every token at once.`
}

func (c *tokenRevokeCmd) Run(e env) error {
	cl, ctx, done, err := c.session(30 * time.Second)
	if err != nil {
		return err
	}
	defer done()
	if err := cl.RevokeToken(ctx, c.ID); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "revoked join token %s\n", c.ID)
	return nil
}
