/// The result of importing a tunnel from another tool's configuration (`~/.ssh/config` through
/// `SSHConfigImport`, OpenClaw's `openclaw.json` through `OpenClawImport`): the tunnel's name, the
/// keys to write into its `[tunnels.NAME]` table, and what could not be carried over.
///
/// Typical use (the `import` and `connect` commands):
///
/// ```swift
/// let imported = try SSHConfigImport.importHost("gw", environment: env)
/// let text = try ConfigEditor.addTunnel(imported.tableText(home: env.home), named: imported.name, to: oldText)
/// _ = try ConfigLoader.parse(text: text, path: configPath, environment: env)  // validate before writing
/// ```

/// Where a setting came from: a file and a 1-based line.
public struct SettingLocation: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int

    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }

    public var description: String { "\(file):\(line)" }

    /// `file:line` with the home directory shown as `~`.
    public func abbreviated(home: String) -> String {
        "\(SSHClientConfig.abbreviate(file, home: home)):\(line)"
    }
}

/// A TOML value to write for one key.
public enum ImportedValue: Sendable, Equatable, CustomStringConvertible {
    case string(String)
    case integer(Int)
    case bool(Bool)
    /// An array of strings (`jump`, several identity files, several forwards).
    case strings([String])

    /// The value in TOML syntax.
    public var toml: String {
        switch self {
        case .string(let s): return TOMLWriter.quote(s)
        case .strings(let list): return "[" + list.map(TOMLWriter.quote).joined(separator: ", ") + "]"
        case .integer(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        }
    }

    public var description: String { toml }
}

/// One key of the tunnel table, with the setting it was derived from.
public struct ImportedKey: Sendable, Equatable {
    /// A tunnel key of the config file (`target`, `local`, ...; see `ConfigLoader.tunnelKeys`).
    public var key: String
    public var value: ImportedValue
    /// The line it came from; nil for defaults chosen by the import itself.
    public var origin: SettingLocation?

    public init(key: String, value: ImportedValue, origin: SettingLocation? = nil) {
        self.key = key
        self.value = value
        self.origin = origin
    }
}

/// A setting of the source configuration that the tunnel cannot reproduce.
public struct UnsupportedSetting: Sendable, Equatable, CustomStringConvertible {
    /// The keyword or key path as written (`ProxyJump`, `gateway.remote.transport`).
    public var setting: String
    public var value: String
    public var location: SettingLocation
    /// Why it cannot be carried over, and what to do instead.
    public var reason: String

    public init(setting: String, value: String, location: SettingLocation, reason: String) {
        self.setting = setting
        self.value = value
        self.location = location
        self.reason = reason
    }

    /// `file:line: Setting value: reason`.
    public var description: String { "\(location): \(setting) \(value): \(reason)" }

    /// Like `description`, with the home directory shown as `~`.
    public func description(home: String) -> String {
        "\(location.abbreviated(home: home)): \(setting) \(value): \(reason)"
    }
}

/// A problem that stops an import: what and where.
public struct ImportError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// Where the offending setting is, when there is one.
    public var location: SettingLocation?

    public init(_ message: String, at location: SettingLocation? = nil) {
        self.message = message
        self.location = location
    }

    public var description: String {
        if let location { return "\(location): \(message)" }
        return message
    }
}

/// A tunnel imported from another configuration.
public struct TunnelImport: Sendable, Equatable {
    /// The tunnel's name (`[tunnels.NAME]`): only `A-Z a-z 0-9 _ -`.
    public var name: String
    /// What was imported, for the comment above the table, e.g. `Host gw in ~/.ssh/config`.
    public var source: String
    /// The keys to write, in documentation order.
    public var keys: [ImportedKey]
    /// Settings that cannot be carried over, in file order.
    public var unsupported: [UnsupportedSetting]
    /// Things the operator should know that are not problems (a default that was chosen, other
    /// LocalForward lines that were not imported, ...).
    public var notes: [String]

    public init(
        name: String, source: String, keys: [ImportedKey], unsupported: [UnsupportedSetting] = [], notes: [String] = []
    ) {
        self.name = name
        self.source = source
        self.keys = TunnelImport.ordered(keys)
        self.unsupported = unsupported
        self.notes = notes
    }

    /// The value imported for `key`, if any.
    public func value(forKey key: String) -> ImportedValue? {
        keys.first { $0.key == key }?.value
    }

    /// The `[tunnels.NAME]` table: a comment naming the source, the header, one line per key.
    /// Ends with a newline. Paths under `home` are written as `~/...`.
    public func tableText(home: String? = nil) -> String {
        var out = "# imported from \(source)\n"
        out += "[tunnels.\(TOMLTable.quoteKeyIfNeeded(name))]\n"
        for k in keys {
            var value = k.value
            if let home, case .string(let s) = value, s.hasPrefix("/") {
                value = .string(SSHClientConfig.abbreviate(s, home: home))
            }
            if let home, case .strings(let list) = value {
                value = .strings(list.map { $0.hasPrefix("/") ? SSHClientConfig.abbreviate($0, home: home) : $0 })
            }
            out += "\(TOMLTable.quoteKeyIfNeeded(k.key)) = \(value.toml)\n"
        }
        return out
    }

    /// Turns any text into a valid tunnel name: characters other than `A-Z a-z 0-9 _ -` become `-`.
    public static func sanitizedName(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            if TOMLParser.isBareKeyByte(b) {
                out.append(Character(Unicode.Scalar(b)))
            } else if !out.isEmpty && !out.hasSuffix("-") {
                out.append("-")
            }
        }
        while out.hasSuffix("-") { out.removeLast() }
        return out.isEmpty ? "tunnel" : out
    }

    static func ordered(_ keys: [ImportedKey]) -> [ImportedKey] {
        let order = Dictionary(uniqueKeysWithValues: KeySpec.all.enumerated().map { ($0.element.name, $0.offset) })
        return keys.enumerated()
            .sorted { (order[$0.element.key] ?? Int.max, $0.offset) < (order[$1.element.key] ?? Int.max, $1.offset) }
            .map(\.element)
    }
}
