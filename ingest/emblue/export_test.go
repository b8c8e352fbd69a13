package emblue

// Internal parsers exported for the external tests' fuzz targets.
var ParseTime = parseTime
