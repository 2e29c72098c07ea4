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
//	{"type":"unsupported","class":["externalptr"],"repr":"..."} R->host only
//
// Code, environments and S4 objects travel as structure; nothing on
// either side parses, evaluates or unserializes them while decoding:
//
//	{"type":"symbol","value":"x"}                            "" is the missing argument
//	{"type":"language","value":[<fn>,<arg>...],"names":["",...],"repr":"f(x)"}
//	{"type":"closure","formals":{"names":[...],"values":[...]},"body":<value>,"env":<environment>,"source":"..."}
//	{"type":"primitive","name":"sum"}
//	{"type":"environment","kind":"global"|"base"|"empty"|"namespace"|"package","name":"..."}
//	{"type":"environment","kind":"local","name":"","id":"e1","names":[...],"values":[...],"dropped":0}
//	{"type":"environment","kind":"local","name":"","ref":"e1"}
//	{"type":"S4","attributes":{<slots>...,"class":<character(1)>}}
//
// A formula is a language value with class and .Environment attributes;
// repr and source are display text only. A local environment carries at
// most [MaxEnvBindings] bindings (R sends the first by name and counts the
// rest in dropped); a ref names the id of a local environment sent before
// it in wire order (elements, formals, body, env, bindings, then
// attributes), which is how cycles and shared environments cross; a
// dangling or forward ref, or an id used twice, is refused. Vectors and
// lists with R's S4 bit carry "s4":true; a list with "pairlist":true is a
// pairlist (the formals inside a function(...) call).
//
// Every type except NULL, json, unsupported, symbol, primitive and
// non-local environments may carry "attributes":{"name":<value>,...}; all R
// attributes travel that way, which is how factors, dates, data frames,
// matrices and names survive.
//
// NA is represented in Go by sentinels that cannot occur as data on the
// wire: [NAInteger] (R's own NA_integer_), [NAString] (not valid UTF-8),
// [NALogical], and [NAReal] (R's NA_real_ bit pattern, distinct from NaN).
package rvalue
