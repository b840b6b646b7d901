/// ecto-tunnel's version, written here and nowhere else. `ecto-tunnel --version` prints it, the
/// daemon reports it in `GET /v1/version` and `GET /v1/status` ("daemon_version"), and the
/// packaging (`make deb`, scripts/version.sh) reads it from this file for the package's Version:.
/// Keep it a plain `"MAJOR.MINOR.PATCH"` literal on the line below: scripts/version.sh parses it.
public enum EctoVersion {
    public static let current = "0.1.0"
}
