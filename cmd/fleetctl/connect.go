package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetctl/fleetctl/agent"
	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/pki"
)

// clientFlags are how every client command finds an agent and the
// credential to talk to it with.
type clientFlags struct {
	DataDir    string `name:"data-dir" env:"FLEETCTL_DATA_DIR" placeholder:"DIR" help:"Data dir of the agent on this appliance: the CLI talks to that agent as an admin (local-NAME), with a short-lived credential signed by the CA key there."`
	Server     string `env:"FLEETCTL_SERVER" placeholder:"HOST:PORT" help:"Address of any agent of the fleet (default: the agent of --data-dir)."`
	Credential string `env:"FLEETCTL_CREDENTIAL" placeholder:"FILE" help:"Admin credential exported with 'fleetctl credential issue', for a CLI away from the appliances."`
}

// client connects to the agent the flags name.
func (f clientFlags) client() (*client.Client, error) {
	switch {
	case f.Credential != "":
		if f.Server == "" {
			return nil, errors.New("--credential needs --server HOST:PORT (any agent of the fleet)")
		}
		b, err := pki.ReadFile(f.Credential)
		if err != nil {
			return nil, fmt.Errorf("credential: %w", err)
		}
		creds, err := pki.ParseBundle(b)
		if err != nil {
			return nil, fmt.Errorf("credential %s: %w", f.Credential, err)
		}
		return client.NewClient(f.Server, creds, "")
	case f.DataDir != "":
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		creds, name, addr, err := agent.LocalAdmin(ctx, f.DataDir)
		if err != nil {
			return nil, err
		}
		if f.Server != "" {
			return client.NewClient(f.Server, creds, "")
		}
		return client.NewClient(addr, creds, name)
	}
	return nil, errors.New("no agent to talk to: give --data-dir DIR on an appliance (or set FLEETCTL_DATA_DIR), or --server HOST:PORT with --credential FILE")
}

// session connects to the agent the flags name and bounds the command's
// requests by timeout; done releases both.
func (f clientFlags) session(timeout time.Duration) (cl *client.Client, ctx context.Context, done func(), err error) {
	if cl, err = f.client(); err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return cl, ctx, func() { cancel(); cl.Close() }, nil
}
