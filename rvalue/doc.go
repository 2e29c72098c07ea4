// Package rvalue is the typed model of R values that cross the boundary
// between the host and the R runtime in the container, and their JSON wire
// form. The R half of the contract lives in bridge/r/values.R
// (.securer_encode / .securer_decode); the two must agree exactly, which
// rroundtrip_test.go checks against a real R.
//
// Wire format of one value:
//
//	{"type":"NULL"}
//	{"type":"logical","value":[true,false,null]}             null = NA
//	{"type":"integer","value":[1,null,-3]}                   null = NA
//	{"type":"double","value":[1.5,"NA","NaN","Inf","-Inf"]}  numbers round-trip exactly
//	{"type":"character","value":["a",null]}                  null = NA, UTF-8, no NUL
//	{"type":"list","value":[<value>, ...]}
//	{"type":"raw","value":"<base64>"}
//	{"type":"complex","value":[{"re":1,"im":2},null]}        null = NA; re/im like doubles
//	{"type":"json","value":<any JSON>}                       host->R only; R simplifies it like fromJSON()
//	{"type":"unsupported","class":["function"],"repr":"..."} R->host only
//
// Every type except NULL, json and unsupported may carry
// "attributes":{"name":<value>,...}; all R attributes travel that way, which
// is how factors, dates, data frames, matrices and names survive.
//
// NA is represented in Go by sentinels that cannot occur as data on the
// wire: [NAInteger] (R's own NA_integer_), [NAString] (not valid UTF-8),
// [NALogical], and [NAReal] (R's NA_real_ bit pattern, distinct from NaN).
package rvalue
