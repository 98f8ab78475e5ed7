package migrations

// ApplyFS is applyFS for the external tests: Apply's code path over any FS.
var ApplyFS = applyFS

// Files is the embedded migrations, for the tests' legacy runner.
var Files = files
