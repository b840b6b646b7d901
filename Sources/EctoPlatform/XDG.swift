/// The XDG base directories, with one rule for every lookup (config file, units, the background
/// daemon's log, the control socket): a variable counts only when it holds an absolute path (the
/// specification: a relative one is invalid and must be ignored), else the specification's
/// default under the home directory.
public enum XDG {
    /// `$XDG_CONFIG_HOME`, else `HOME/.config` (systemd's `%E` for a user manager).
    public static func configHome(_ environment: [String: String], home: String) -> String {
        absolute(environment["XDG_CONFIG_HOME"]) ?? join(home, ".config")
    }

    /// `$XDG_STATE_HOME`, else `HOME/.local/state`.
    public static func stateHome(_ environment: [String: String], home: String) -> String {
        absolute(environment["XDG_STATE_HOME"]) ?? join(home, ".local/state")
    }

    /// `$XDG_RUNTIME_DIR` (systemd's `%t`); nil when unset or not absolute (there is no default:
    /// the caller picks its fallback).
    public static func runtimeDirectory(_ environment: [String: String]) -> String? {
        absolute(environment["XDG_RUNTIME_DIR"])
    }

    private static func absolute(_ value: String?) -> String? {
        guard let value, value.hasPrefix("/") else { return nil }
        return value.count > 1 && value.hasSuffix("/") ? String(value.dropLast()) : value
    }

    private static func join(_ directory: String, _ relative: String) -> String {
        directory.hasSuffix("/") ? directory + relative : directory + "/" + relative
    }
}
