import Foundation
import Logging

/// Log lines on stderr: `2026-11-21T10:00:00.123Z warning [tunnel.name=gw ssh.target=u@h:22] message`.
/// Under journald (`JOURNAL_STREAM` set) each line instead starts with its syslog priority
/// (`<4>`), which journald strips and records, so `journalctl -p warning` works; the timestamp
/// is left to journald.
struct StderrLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let label: String
    let journald: Bool

    init(label: String, level: Logger.Level, journald: Bool) {
        self.label = label
        self.logLevel = level
        self.journald = journald
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        let fields = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        var line = journald ? "<\(Self.priority(event.level))>" : Self.timestamp() + " "
        line += "\(event.level.rawValue)"
        if !fields.isEmpty { line += " [\(fields)]" }
        line += " \(event.message)\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var time = tm()
        var seconds = ts.tv_sec
        gmtime_r(&seconds, &time)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", time.tm_year + 1900, time.tm_mon + 1, time.tm_mday,
            time.tm_hour, time.tm_min, time.tm_sec, ts.tv_nsec / 1_000_000)
    }
}
