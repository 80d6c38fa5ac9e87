package schema_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/fleetctl/fleetctl/schema"
)

func mustSchedule(t *testing.T, s string) schema.Schedule {
	t.Helper()
	sc, err := schema.ParseSchedule(s)
	if err != nil {
		t.Fatalf("schedule %q: %v", s, err)
	}
	return sc
}

func mustRetention(t *testing.T, s string) schema.Retention {
	t.Helper()
	r, err := schema.ParseRetention(s)
	if err != nil {
		t.Fatalf("retention %q: %v", s, err)
	}
	return r
}

// The documented defaults, spelled out: spec.go's comments and the example
// file say these, so a change here is a change of the format.
func TestDefaultValues(t *testing.T) {
	if schema.DefaultFleet != "fleet" ||
		schema.DefaultFailoverAfter != schema.Duration(30*time.Second) ||
		schema.DefaultFenceAfter != schema.Duration(15*time.Second) ||
		schema.DefaultDegradedLatency != schema.Duration(250*time.Millisecond) ||
		schema.DefaultFailback != schema.FailbackManual ||
		schema.DefaultRole != schema.RoleStorage ||
		schema.DefaultState != schema.StatePresent ||
		schema.DefaultKeepMin != 1 {
		t.Fatalf("the defaults are not the documented fleet, 30s, 15s, 250ms, manual, storage, present, 1")
	}
}

// sparseSpec leaves out everything that has a default.
func sparseSpec(t *testing.T) *schema.Spec {
	return &schema.Spec{
		Version: 1,
		Appliances: []schema.Appliance{
			{Name: "nas1", Address: "nas1:7400", Pools: []schema.Pool{{Name: "tank", Path: "/mnt/tank"}}},
			{Name: "nas2", Address: "nas2:7400", Pools: []schema.Pool{{Name: "tank", Path: "/mnt/tank"}}},
		},
		Shares: []schema.Share{
			{Name: "plain", Appliance: "nas1", Pool: "tank"},
			{
				Name: "snapped", Appliance: "nas1", Pool: "tank",
				Snapshots: &schema.Snapshots{Schedule: mustSchedule(t, "every 1h"), Retention: mustRetention(t, "24h 7d")},
			},
			{
				Name: "replicated", Appliance: "nas1", Pool: "tank",
				Replication: &schema.Replication{To: schema.Target{Appliance: "nas2", Pool: "tank"}, Schedule: mustSchedule(t, "every 10m"), Retention: mustRetention(t, "48h")},
			},
		},
	}
}

func TestApplyDefaultsFillsExactlyTheDefaults(t *testing.T) {
	got := sparseSpec(t)
	got.ApplyDefaults()

	want := sparseSpec(t)
	want.Fleet = "fleet"
	want.Witness = schema.Witness{
		FailoverAfter:   schema.Duration(30 * time.Second),
		FenceAfter:      schema.Duration(15 * time.Second),
		DegradedLatency: schema.Duration(250 * time.Millisecond),
		Failback:        schema.FailbackManual,
	}
	want.Appliances[0].Role = schema.RoleStorage
	want.Appliances[1].Role = schema.RoleStorage
	for i := range want.Shares {
		want.Shares[i].State = schema.StatePresent
	}
	want.Shares[0].Failover = schema.FailoverOff // no replication
	want.Shares[1].Failover = schema.FailoverOff
	want.Shares[1].Snapshots.KeepMin = 1
	want.Shares[2].Failover = schema.FailoverManual // replicated
	want.Shares[2].Replication.KeepMin = 1

	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ApplyDefaults:\nwant %+v\ngot  %+v", want, got)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the spec with defaults does not validate: %v", err)
	}
}

func TestApplyDefaultsIsIdempotent(t *testing.T) {
	once := sparseSpec(t)
	once.ApplyDefaults()
	twice := sparseSpec(t)
	twice.ApplyDefaults()
	twice.ApplyDefaults()
	if !reflect.DeepEqual(once, twice) {
		t.Fatalf("ApplyDefaults twice differs from once:\nonce  %+v\ntwice %+v", once, twice)
	}
}

func TestApplyDefaultsKeepsWrittenValues(t *testing.T) {
	written := func() *schema.Spec {
		s := sparseSpec(t)
		s.Fleet = "office"
		s.Witness = schema.Witness{
			FailoverAfter:   schema.Duration(time.Minute),
			FenceAfter:      schema.Duration(40 * time.Second),
			DegradedLatency: schema.Duration(time.Second),
			Failback:        schema.FailbackAuto,
		}
		s.Appliances[0].Role = schema.RoleStorage
		s.Appliances[1].Role = schema.RoleWitness // wrong with pools, but written
		s.Appliances = append(s.Appliances, schema.Appliance{Name: "w", Address: "w:7400", Role: schema.RoleWitness})
		for i := range s.Shares {
			s.Shares[i].State = schema.StateAbsent
		}
		s.Shares[0].Failover = schema.FailoverManual // wrong without replication, but written
		s.Shares[1].Failover = schema.FailoverOff
		s.Shares[1].Snapshots.KeepMin = 5
		s.Shares[2].Failover = schema.FailoverOff // written off despite replication
		s.Shares[2].Replication.KeepMin = 3
		return s
	}
	got := written()
	got.ApplyDefaults()
	if want := written(); !reflect.DeepEqual(got, want) {
		t.Fatalf("ApplyDefaults changed written values:\nwant %+v\ngot  %+v", want, got)
	}
}

// Parse applies the defaults, and only where nothing was written.
func TestParseAppliesDefaults(t *testing.T) {
	s := mustParse(t, "fleet.yaml", []byte(`version: 1
witness:
  fence_after: 10s
appliances:
  - name: nas1
    address: nas1:7400
    pools: [{name: tank, path: /mnt/tank}]
  - name: nas2
    address: nas2:7400
    pools: [{name: tank, path: /mnt/tank}]
shares:
  - name: a
    appliance: nas1
    pool: tank
    replication: {to: nas2/tank, schedule: every 10m, retention: 7d}
  - name: b
    appliance: nas1
    pool: tank
    replication: {to: nas2/tank, schedule: every 10m, retention: 7d, keep_min: 4}
    failover: off
`))
	if s.Witness.FenceAfter != schema.Duration(10*time.Second) || s.Witness.FailoverAfter != schema.DefaultFailoverAfter {
		t.Errorf("witness %+v, want the written fence_after 10s and the default failover_after 30s", s.Witness)
	}
	if a := s.Share("a"); a.Failover != schema.FailoverManual || a.Replication.KeepMin != 1 || a.State != schema.StatePresent {
		t.Errorf("share a: failover %q keep_min %d state %q, want manual, 1, present", a.Failover, a.Replication.KeepMin, a.State)
	}
	if b := s.Share("b"); b.Failover != schema.FailoverOff || b.Replication.KeepMin != 4 {
		t.Errorf("share b: failover %q keep_min %d, want the written off and 4", b.Failover, b.Replication.KeepMin)
	}
}
