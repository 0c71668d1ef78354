package api

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// httpMetrics count and time every request by route: the pattern it was
// routed by, never the raw path, so a client sending a million keys adds
// no series. Errors show through the code label.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Route labels for requests no pattern matched, and for every key of
// /v1/kv (which ServeHTTP routes itself).
const (
	routeUnmatched = "unmatched"
	routeKV        = "/v1/kv/{key...}"
)

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	if reg == nil {
		return nil
	}
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troupe_http_requests_total",
			Help: "HTTP requests answered, by route (the pattern routed by, not the path), method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "troupe_http_request_duration_seconds",
			Help: "Time to answer an HTTP request, by route, method and status code; blocking queries (?index) are left out, since they wait on purpose.",
			// From a stale read out of the page cache to a write that
			// waited for a leader through an election.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method", "code"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

// observe records one answered request.
func (m *httpMetrics) observe(r *http.Request, route string, code int, took time.Duration) {
	method := methodLabel(r.Method)
	c := codeLabel(code)
	m.requests.WithLabelValues(route, method, c).Inc()
	if !blockingQuery(r) {
		m.duration.WithLabelValues(route, method, c).Observe(took.Seconds())
	}
}

// codeLabels are the status codes' labels, made once: strconv.Itoa
// allocates for every number past 99.
var codeLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// methodLabel keeps the method label to the methods the API serves: any
// other string a client sends would be a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodHead, http.MethodOptions, http.MethodPatch:
		return m
	}
	return "other"
}

// blockingQuery reports a GET that may wait for a change (?index= above
// 0): its time is the client's choice, and would swamp the others'.
func blockingQuery(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.RawQuery, "index=") {
		return false
	}
	v, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	return err == nil && v > 0
}

// routeLabel is a mux pattern without its method (a label of its own).
func routeLabel(pattern string) string {
	if pattern == "" {
		return routeUnmatched
	}
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		return pattern[i+1:]
	}
	return pattern
}

// routeOf finds the route of a request answered before it reached its
// handler (rate limited, refused by the ACLs).
func (s *Server) routeOf(r *http.Request) string {
	if isKVPath(r.URL.Path) {
		return routeKV
	}
	_, pattern := s.mux.Handler(r)
	return routeLabel(pattern)
}

func isKVPath(p string) bool { return p == "/v1/kv" || strings.HasPrefix(p, "/v1/kv/") }

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// agentMetrics is Consul's GET /v1/agent/metrics: with
// ?format=prometheus the same exposition as /metrics, otherwise a JSON
// summary in the shape of Consul's (consul/api's Agent().Metrics()
// decodes it).
func (s *Server) agentMetrics(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("format") == "prometheus" {
		s.prometheus.ServeHTTP(w, r)
		return
	}
	families, err := s.opts.Metrics.Gather()
	if err != nil && len(families) == 0 {
		httpError(w, http.StatusInternalServerError, "gathering metrics: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, metricsSummary(families, time.Now()))
}

// MetricsSummary is the JSON form of /v1/agent/metrics, in the shape of
// Consul's. Consul reports what happened within its last 10-second
// interval; Troupe's figures are Prometheus' cumulative ones since the
// node started: a counter's Sum is its total and Count that total rounded
// down (consul/api reads Count as an integer), a histogram's Count and
// Sum its observations' count and sum, Mean their ratio.
// Min, Max and Stddev are not tracked and stay 0.
type MetricsSummary struct {
	Timestamp string
	Gauges    []GaugeValue
	Points    []struct{}
	Counters  []SampledValue
	Samples   []SampledValue
}

// GaugeValue is one gauge series of a MetricsSummary.
type GaugeValue struct {
	Name   string
	Value  float64
	Labels map[string]string
}

// SampledValue is one counter or histogram series of a MetricsSummary.
type SampledValue struct {
	Name   string
	Count  int64
	Sum    float64
	Min    float64
	Max    float64
	Mean   float64
	Stddev float64
	Labels map[string]string
}

func metricsSummary(families []*dto.MetricFamily, now time.Time) MetricsSummary {
	out := MetricsSummary{
		// Consul's own layout (Go's time.Time.String, truncated).
		Timestamp: now.UTC().Truncate(10 * time.Second).Format("2006-01-02 15:04:05 -0700 MST"),
		Gauges:    []GaugeValue{}, Points: []struct{}{}, Counters: []SampledValue{}, Samples: []SampledValue{},
	}
	for _, f := range families {
		name := f.GetName()
		for _, m := range f.GetMetric() {
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				out.Gauges = append(out.Gauges, GaugeValue{Name: name, Value: finite(m.GetGauge().GetValue()), Labels: labels})
			case dto.MetricType_UNTYPED:
				out.Gauges = append(out.Gauges, GaugeValue{Name: name, Value: finite(m.GetUntyped().GetValue()), Labels: labels})
			case dto.MetricType_COUNTER:
				v := finite(m.GetCounter().GetValue())
				out.Counters = append(out.Counters, SampledValue{Name: name, Count: int64(v), Sum: v, Labels: labels})
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out.Samples = append(out.Samples, sample(name, h.GetSampleCount(), h.GetSampleSum(), labels))
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				out.Samples = append(out.Samples, sample(name, sm.GetSampleCount(), sm.GetSampleSum(), labels))
			}
		}
	}
	return out
}

func sample(name string, count uint64, sum float64, labels map[string]string) SampledValue {
	v := SampledValue{Name: name, Count: int64(count), Sum: finite(sum), Labels: labels}
	if count > 0 {
		v.Mean = finite(sum / float64(count))
	}
	return v
}

// finite maps NaN and the infinities, which JSON cannot carry, to 0.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

// prometheusHandler serves the exposition of g.
func prometheusHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
