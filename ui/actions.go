package ui

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetctl/fleetctl/client"
	"github.com/fleetctl/fleetctl/preview"
	"github.com/fleetctl/fleetctl/schema"
)

// maxSpec is the largest fleet.yaml the plan view takes.
const maxSpec = 4 << 20

// actionTimeout bounds a preview or an apply, as fleetctl diff and apply.
const actionTimeout = 60 * time.Second

// planView is the plan page at each of its steps: the form, the preview,
// the approval, the result.
type planView struct {
	YAML string
	// Problems are what is wrong with the file; nothing was sent.
	Problems []string
	// Lines are the preview as fleetctl diff prints it, line by line.
	Lines []planLine
	// Changed says applying it would change something.
	Changed bool
	// Generation is the stored generation the preview was made against,
	// or the approval's; an apply is a compare-and-set against it.
	Generation uint64
	// Hazards are the changes the leader wants approved, with Approve
	// the approval that approves exactly them and Confirm the word to type.
	Hazards []hazardView
	Approve schema.Approval
	Confirm string
	// Applied is the generation stored, Unchanged when it was already.
	Applied   uint64
	Unchanged bool
	// Message says why an apply was refused.
	Message string
}

// hazardView is one change that needs approval.
type hazardView struct {
	schema.Hazard
	// Flag approves it on the command line.
	Flag string
}

// planLine is one line of the preview with its kind for colour: add,
// change, destroy, look (report only or unknown), head or plain.
type planLine struct {
	Kind, Text string
}

func (s *Server) planForm(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "plan", page{Name: "plan", Title: "Plan", Data: planView{}})
}

// specFromForm is the fleet.yaml of a plan form: the uploaded file when
// there is one, else the text field.
func specFromForm(r *http.Request) (string, error) {
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxSpec); err != nil {
			return "", fmt.Errorf("reading the form: %w", err)
		}
		if f, _, err := r.FormFile("file"); err == nil {
			defer f.Close()
			b, err := io.ReadAll(io.LimitReader(f, maxSpec+1))
			if err != nil {
				return "", fmt.Errorf("reading the uploaded file: %w", err)
			}
			if len(b) > maxSpec {
				return "", fmt.Errorf("the file is larger than %d bytes", maxSpec)
			}
			if len(bytes.TrimSpace(b)) > 0 {
				return string(b), nil
			}
		}
	}
	return r.FormValue("yaml"), nil
}

// parseForPlan parses yaml; an invalid one fills v.Problems.
func parseForPlan(yaml string, v *planView) *schema.Spec {
	spec, err := schema.Parse("fleet.yaml", []byte(yaml))
	if err == nil {
		return spec
	}
	var problems schema.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			v.Problems = append(v.Problems, p.Error())
		}
	} else {
		v.Problems = []string{err.Error()}
	}
	return nil
}

func (s *Server) planPreview(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxSpec)
	p := page{Name: "plan", Title: "Plan"}
	yaml, err := specFromForm(r)
	if err != nil {
		p.Errors = []string{err.Error()}
		p.Data = planView{}
		s.render(w, r, "plan", p)
		return
	}
	v := planView{YAML: yaml}
	if spec := parseForPlan(yaml, &v); spec != nil {
		ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
		defer cancel()
		rep, err := preview.Compute(ctx, s.fleet, []byte(yaml), spec)
		if err != nil {
			p.Errors = []string{"preview: " + apiMessage(err)}
		} else {
			v.Lines, v.Changed, v.Generation = planLines(rep), rep.Changed(), rep.StoredGeneration
		}
	}
	p.Data = v
	s.render(w, r, "plan", p)
}

// planLines is rep as fleetctl diff prints it (without colour), each line
// with its kind.
func planLines(rep preview.Report) []planLine {
	var b bytes.Buffer
	_ = rep.Render(&b, false) // a bytes.Buffer does not fail
	var out []planLine
	for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		kind := "plain"
		t := strings.TrimLeft(l, " ")
		switch {
		case strings.HasPrefix(t, "+ "):
			kind = "add"
		case strings.HasPrefix(t, "~ "):
			kind = "change"
		case strings.HasPrefix(t, "- "):
			kind = "destroy"
		case strings.HasPrefix(t, "! "), strings.HasPrefix(t, "? "):
			kind = "look"
		case l != "" && !strings.HasPrefix(l, " "):
			kind = "head"
		}
		out = append(out, planLine{Kind: kind, Text: l})
	}
	return out
}

// planApply stores the previewed file, as fleetctl apply does: against
// the generation it was previewed against. When the leader wants changes
// approved, the page lists them and asks for the word apply would ask
// for; only the answer sends the approvals, which approve exactly those.
func (s *Server) planApply(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxSpec)
	p := page{Name: "plan", Title: "Plan"}
	v := planView{YAML: r.FormValue("yaml")}
	gen, _ := strconv.ParseUint(r.FormValue("generation"), 10, 64)
	v.Generation = gen
	if parseForPlan(v.YAML, &v) == nil {
		p.Data = v
		s.render(w, r, "plan", p)
		return
	}
	req := client.ApplyRequest{YAML: v.YAML, ExpectedGeneration: gen}
	if r.Form.Has("approve") || r.FormValue("rename_fleet") != "" || r.FormValue("replace_appliances") != "" {
		req.Approval = schema.Approval{Approve: r.Form["approve"], RenameFleet: r.FormValue("rename_fleet") != "", ReplaceAppliances: r.FormValue("replace_appliances") != ""}
		if err := req.Approval.Check(); err != nil {
			p.Errors = []string{"approval: " + err.Error()}
			p.Data = v
			s.render(w, r, "plan", p)
			return
		}
		if want := r.FormValue("want"); want == "" || strings.TrimSpace(r.FormValue("confirm")) != want {
			v.Message = fmt.Sprintf("Not approved: type %q to approve. Nothing was changed.", want)
			v.Approve, v.Confirm = req.Approval, want
			v.Hazards = hazardViews(r.Form["hazard_kind"], r.Form["hazard_name"], r.Form["hazard_reason"])
			p.Data = v
			s.render(w, r, "plan", p)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), actionTimeout)
	defer cancel()
	res, err := s.fleet.Apply(ctx, req)
	var ae *client.APIError
	switch {
	case errors.As(err, &ae) && ae.Code == client.CodeApprovalRequired:
		var hs []hazardView
		for _, h := range ae.Hazards {
			hs = append(hs, hazardView{Hazard: h, Flag: approvalFlags([]schema.Hazard{h})})
		}
		v.Hazards, v.Approve, v.Generation = hs, schema.ApprovalFor(ae.Hazards), ae.Generation
		v.Confirm = "yes"
		if len(ae.Hazards) == 1 && ae.Hazards[0].Name != "" {
			v.Confirm = ae.Hazards[0].Name
		}
	case errors.As(err, &ae) && ae.Code == client.CodeConflict:
		v.Message = "Refused: " + ae.Message + ". The stored spec changed since the preview: preview the file again. Nothing was changed."
	case errors.As(err, &ae) && ae.Code == client.CodeInvalidSpec:
		for _, pr := range ae.Problems {
			v.Problems = append(v.Problems, pr.Error())
		}
		v.Message = "Refused by the fleet. Nothing was changed."
	case err != nil:
		p.Errors = []string{"apply: " + apiMessage(err)}
	default:
		v.Applied, v.Unchanged = res.Generation, res.Unchanged
		s.log.Info("applied from the dashboard", "generation", res.Generation, "unchanged", res.Unchanged)
	}
	p.Data = v
	s.render(w, r, "plan", p)
}

// hazardViews rebuilds the hazards a confirmation form carried back.
func hazardViews(kinds, names, reasons []string) []hazardView {
	var out []hazardView
	for i := range kinds {
		h := schema.Hazard{Kind: kinds[i]}
		if i < len(names) {
			h.Name = names[i]
		}
		if i < len(reasons) {
			h.Reason = reasons[i]
		}
		out = append(out, hazardView{Hazard: h, Flag: approvalFlags([]schema.Hazard{h})})
	}
	return out
}

// approvalFlags are fleetctl apply's flags that approve exactly hs.
func approvalFlags(hs []schema.Hazard) string {
	return schema.ApprovalFor(hs).Flags()
}

// failoverView is the switchover page: the question, then the answer.
type failoverView struct {
	Share, To string
	// Message says why it was not done.
	Message string
	Result  *client.FailoverResponse
}

// failover is a planned switchover, as fleetctl failover SHARE --to TO:
// the first POST asks to confirm by typing the share's name, the second,
// with it, switches.
func (s *Server) failover(w http.ResponseWriter, r *http.Request) {
	p := page{Name: "witness", Title: "Switchover"}
	v := failoverView{Share: r.FormValue("share"), To: r.FormValue("to")}
	if v.Share == "" || v.To == "" {
		http.Error(w, "a switchover needs a share and the appliance to move it to", http.StatusBadRequest)
		return
	}
	if !r.Form.Has("confirm") {
		p.Data = v
		s.render(w, r, "failover", p)
		return
	}
	if strings.TrimSpace(r.FormValue("confirm")) != v.Share {
		v.Message = fmt.Sprintf("Not switched: type the share's name, %s, to confirm.", v.Share)
		p.Data = v
		s.render(w, r, "failover", p)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.switchT)
	defer cancel()
	res, err := s.fleet.Failover(ctx, v.Share, v.To)
	if err != nil {
		v.Message = "The switchover did not happen: " + apiMessage(err)
	} else {
		v.Result = res
		s.log.Info("switchover from the dashboard", "share", res.Share, "to", res.To, "epoch", res.Epoch)
	}
	p.Data = v
	s.render(w, r, "failover", p)
}
