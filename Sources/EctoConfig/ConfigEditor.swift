/// Rewrites one key of one tunnel in the original config text, keeping every other byte.
public enum ConfigEditor {
    /// Sets `key` of `[tunnels.NAME]` to the TOML string `value` (quoted and escaped here).
    ///
    /// Only the bytes of the old value change; comments, order, spacing and line endings stay as they
    /// are. If the table does not set the key, `key = "value"` is added after the table's last key
    /// (indented like it), or right after the header when the table is empty.
    /// Throws when the text has TOML syntax errors, the key is not a tunnel key, or there is no such tunnel.
    public static func setValue(
        _ value: String, forKey key: String, inTunnel name: String, in text: String
    ) throws(ConfigErrors) -> String {
        let file = "<config>"
        let doc = TOMLParser.parse(text)
        if !doc.errors.isEmpty {
            throw ConfigErrors(
                doc.errors.map { ConfigError(file: file, line: $0.line, column: $0.column, message: $0.message) })
        }
        let keyPath = "tunnels.\(TOMLTable.quoteKeyIfNeeded(name)).\(TOMLTable.quoteKeyIfNeeded(key))"
        guard KeySpec.byName[key] != nil else {
            var message = "unknown key"
            if let hint = closest(to: key, in: ConfigLoader.tunnelKeys) { message += "; did you mean \(hint)?" }
            throw ConfigErrors([ConfigError(file: file, line: 0, key: keyPath, message: message)])
        }
        guard let table = doc.table(["tunnels", name]) else {
            throw ConfigErrors([
                ConfigError(
                    file: file, line: 0, key: "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))",
                    message: "no [tunnels.\(TOMLTable.quoteKeyIfNeeded(name))] table in the config")
            ])
        }
        var bytes = Array(text.utf8)
        let quoted = TOMLWriter.quote(value)
        if let entry = table.entry(key) {
            bytes.replaceSubrange(entry.value.range, with: Array(quoted.utf8))
            return String(decoding: bytes, as: UTF8.self)
        }
        let newline = text.contains("\r\n") ? "\r\n" : "\n"
        var insertAt = table.headerStatementEnd
        var indentation = ""
        if let last = table.entries.last {
            insertAt = last.statementRange.upperBound
            var i = last.statementRange.lowerBound
            while i < bytes.count && (bytes[i] == 0x20 || bytes[i] == 0x09) {
                indentation.append(Character(Unicode.Scalar(bytes[i])))
                i += 1
            }
        }
        var insertion = ""
        if insertAt > 0 && bytes[insertAt - 1] != 0x0A { insertion += newline }
        insertion += indentation + TOMLTable.quoteKeyIfNeeded(key) + " = " + quoted + newline
        bytes.insert(contentsOf: Array(insertion.utf8), at: insertAt)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Removes `key` (its whole line) from `[tunnels.NAME]`; the text is unchanged when the table
    /// does not set it. Throws like `setValue`.
    public static func removeKey(_ key: String, inTunnel name: String, in text: String) throws(ConfigErrors) -> String {
        let doc = TOMLParser.parse(text)
        if !doc.errors.isEmpty {
            throw ConfigErrors(
                doc.errors.map { ConfigError(file: "<config>", line: $0.line, column: $0.column, message: $0.message) })
        }
        guard let table = doc.table(["tunnels", name]) else {
            throw ConfigErrors([
                ConfigError(
                    file: "<config>", line: 0, key: "tunnels.\(TOMLTable.quoteKeyIfNeeded(name))",
                    message: "no [tunnels.\(TOMLTable.quoteKeyIfNeeded(name))] table in the config")
            ])
        }
        guard let entry = table.entry(key) else { return text }
        var bytes = Array(text.utf8)
        bytes.removeSubrange(entry.statementRange)
        return String(decoding: bytes, as: UTF8.self)
    }
}
