package sendpulse

// Internal parsers exported for the external tests' fuzz targets.
var (
	ParseCode           = parseCode
	ParseUnix           = parseUnix
	BlankTrailingCommas = blankTrailingCommas
)
