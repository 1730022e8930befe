package api_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spotmesh/spotmesh/node/api"
	"github.com/spotmesh/spotmesh/node/market"
)

func TestParseCountRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want market.Range
		err  string
	}{
		{"4", market.Range{Min: 4, Max: 4}, ""},
		{" 4 ", market.Range{Min: 4, Max: 4}, ""},
		{">=4", market.Range{Min: 4}, ""},
		{">4", market.Range{Min: 5}, ""},
		{"<=8", market.Range{Max: 8}, ""},
		{"<8", market.Range{Max: 7}, ""},
		{"4-16", market.Range{Min: 4, Max: 16}, ""},
		{"4 - 16", market.Range{Min: 4, Max: 16}, ""},
		{">=0", market.Range{}, ""},
		{">0", market.Range{Min: 1}, ""},
		{"0-4", market.Range{Max: 4}, ""},
		{"16-4", market.Range{}, "lower bound is above"},
		{"0", market.Range{}, "upper bound of 0"},
		{"<=0", market.Range{}, "upper bound of 0"},
		{"<1", market.Range{}, "upper bound of 0"},
		{"<0", market.Range{}, "nothing is less than 0"},
		{">18446744073709551615", market.Range{}, "nothing is larger"},
		{"", market.Range{}, "want a count or range"},
		{"four", market.Range{}, "want a count or range"},
		{"-4", market.Range{}, "want a count or range"},
		{">=-4", market.Range{}, "want a count or range"},
		{"4-", market.Range{}, "want a count or range"},
		{"=>4", market.Range{}, "want a count or range"},
		{"4.5", market.Range{}, "want a count or range"},
		{"8GiB", market.Range{}, "want a count or range"},
	} {
		got, err := api.ParseCountRange(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("api.ParseCountRange(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("api.ParseCountRange(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseSizeRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want market.Range
		err  bool
	}{
		{"8GiB", market.Range{Min: 8 << 30, Max: 8 << 30}, false},
		{">=8GiB", market.Range{Min: 8 << 30}, false},
		{">8GiB", market.Range{Min: 8<<30 + 1}, false},
		{"<=1TB", market.Range{Max: 1e12}, false},
		{"8GiB-32GiB", market.Range{Min: 8 << 30, Max: 32 << 30}, false},
		{"1.5GB-2GB", market.Range{Min: 1.5e9, Max: 2e9}, false},
		{">=1024B", market.Range{Min: 1024}, false},
		{">=1024", market.Range{}, true},
		{"lots", market.Range{}, true},
		{">=8 gigs", market.Range{}, true},
		{"32GiB-8GiB", market.Range{}, true},
	} {
		got, err := api.ParseSizeRange(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("api.ParseSizeRange(%q) = %+v, %v", tc.in, got, err)
		}
		if err != nil && !strings.Contains(err.Error(), "8GiB") {
			t.Errorf("api.ParseSizeRange(%q): %v does not show the form", tc.in, err)
		}
	}
}

func TestParseBookQueryErrors(t *testing.T) {
	for _, tc := range []struct {
		query, param, says string
	}{
		{"vcpu=x", "vcpu", "want a count or range"},
		{"mem=0GiB", "mem", "upper bound of 0"},
		{"mem=%3E%3D8", "mem", "give a unit"},
		{"mem=big", "mem", "want a size or range"},
		{"disk=%3E%3Dhuge", "disk", "want a size"},
		{"gpus=many", "gpus", "want a count"},
		{"region=EU", "region", "lower-case"},
		{"seller=bob", "seller", "peer ID"},
		{"max_price=cheap", "max_price", "0.05USD/h"},
		{"max_price=0.05EUR/h&currency=USD", "max_price", "not USD"},
		{"currency=dollars1", "currency", "3 to 8 letters"},
		{"min_slots=-1", "min_slots", "whole number"},
		{"include_paused=maybe", "include_paused", "true or false"},
		{"sort=cheapest", "sort", "price, vcpu, mem, expires or newest"},
		{"limit=5000", "limit", "1 to 1000"},
		{"limit=ten", "limit", "1 to 1000"},
		{"vcpus=4", "vcpus", "unknown parameter"},
		{"vcpu=4&vcpu=8", "vcpu", "more than once"},
		{"profile=" + strings.Repeat("p", 65), "profile", "64"},
	} {
		v, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		_, err = api.ParseBookQuery(v)
		var pe *api.ParamError
		if !errors.As(err, &pe) || pe.Param != tc.param || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("api.ParseBookQuery(%s) = %v; want a *api.ParamError for %s saying %q", tc.query, err, tc.param, tc.says)
		}
	}
}

func TestBookQueryValuesRoundTrip(t *testing.T) {
	q := api.BookQuery{Region: "eu", VCPU: ">=4", Memory: "8GiB-16GiB", Disk: "<=1TB", GPUs: ">=1", GPUModel: "A100", Profile: "g1",
		Arch: "arm64", MaxPrice: "0.5usd/h", MinSlots: 2, IncludePaused: true, Sort: "expires", Limit: 7}
	got, err := api.ParseBookQuery(q.Values())
	if err != nil {
		t.Fatal(err)
	}
	want := market.Query{RegionPrefix: "eu", VCPU: market.Range{Min: 4}, Memory: market.Range{Min: 8 << 30, Max: 16 << 30},
		Disk: market.Range{Max: 1e12}, GPUs: market.Range{Min: 1}, GPUModel: "A100", Profile: "g1", Arch: "arm64",
		Currency: "USD", MinSlots: 2, IncludePaused: true, Sort: market.SortExpires, Limit: 7}
	want.MaxPrice.Micro, want.MaxPrice.Currency = 500000, "USD"
	if got != want {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if empty, err := api.ParseBookQuery(api.BookQuery{}.Values()); err != nil || empty != (market.Query{}) {
		t.Errorf("empty query: %+v, %v", empty, err)
	}
}

func TestDurationJSON(t *testing.T) {
	for d, s := range map[time.Duration]string{72 * time.Hour: `"72h"`, 90 * time.Second: `"1m30s"`, 0: `"0s"`, 1500 * time.Millisecond: `"1.5s"`} {
		b, err := api.Duration(d).MarshalJSON()
		if err != nil || string(b) != s {
			t.Errorf("marshal %v = %s, %v; want %s", d, b, err, s)
		}
		var back api.Duration
		if err := back.UnmarshalJSON(b); err != nil || back.Std() != d {
			t.Errorf("unmarshal %s = %v, %v", b, back, err)
		}
	}
	var d api.Duration
	if err := d.UnmarshalJSON([]byte(`3600`)); err == nil {
		t.Error("a number is taken as a duration")
	}
}
