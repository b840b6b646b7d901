import ArgumentParser
import EctoControl
import EctoOperator
import EctoPlatform
import EctoStatus
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Exit codes of the commands that talk to the daemon (the command-line contract); the same
/// numbers `EctoOperator` puts in its failures (`OperatorExit`).
enum ControlExit {
    /// Done; for `status`: every enabled tunnel is up.
    static let ok: Int32 = 0
    /// The daemon refused (unknown tunnel, bad target, config errors) or something failed.
    static let refused = OperatorExit.refused
    /// No daemon answers on the control socket.
    static let noDaemon = OperatorExit.noDaemon
    /// `status`: some enabled tunnel is not up. `target`: saved, but not up within --wait.
    static let notUp = OperatorExit.notUp
    /// `connect`, `status --deep`: the tunnel is up and the gateway answers, but it refused the
    /// token (HTTP 401/403), or wants one and none was found.
    static let tokenRefused = OperatorExit.tokenRefused
}

func printError(_ message: String) {
    writeStandardError("ecto-tunnel: " + message + "\n")
}

/// Sends one request; on any failure prints why and exits with the contract's code.
func call<T: Decodable>(
    _ global: GlobalOptions, _ method: String, _ path: String, body: Data? = nil, as type: T.Type,
    timeout: Double = ControlClient.defaultTimeout
) throws -> T {
    let client = ControlClient(path: global.socketPath, timeout: timeout)
    let answer: ControlAnswer
    do {
        answer = try client.request(method, path, body: body)
    } catch {
        printError(error.description)
        throw ExitCode(ControlExit.noDaemon)
    }
    switch answer.decode(T.self) {
    case .success(let value):
        return value
    case .failure(let failure):
        printError(failure.report.error)
        for problem in failure.report.problems ?? [] { writeStandardError("  \(problem)\n") }
        throw ExitCode(ControlExit.refused)
    }
}

func pathComponent(_ name: String) -> String {
    PercentCoding.encodePathSegment(name)
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the state of every tunnel (or one).",
        discussion: """
            Asks the running daemon. The table has, per tunnel: state (connecting, up, backoff, \
            "backoff (local)" = waiting on this machine: the local port held by another process, a \
            key file not there, descriptors running out; down = disabled, failed = needs you; with \
            `sessions = N`, "up 2/3" says how many SSH sessions are up; with several forwards, "up (2/3 \
            listening)" says one forward's port could not be opened), target, local → remote, uptime, open \
            connections, bytes in (from the remote side) and out, reconnects, and the last error. A tunnel \
            with several forwards (`forwards`) has one line per forward under it: listen address → \
            destination, listener state (listening, retrying: the port is busy, named with its holder; \
            closed), connections and bytes. \
            Sessions of an earlier target that still finish their connections after `target` or \
            `reload` are listed under their tunnel.
            The GATEWAY column is the end-to-end check of the service behind the tunnel (the \
            `probe` key: tcp, http:/PATH or websocket:/PATH, run every probe_interval while the \
            tunnel is up), shown apart from the SSH state so that "tunnel up, gateway down" is \
            visible. --deep runs the probes now (a tcp probe where none is configured) and shows \
            their latency.
            --json prints the status contract: {"version": 1, "daemon_version": "X.Y.Z", "tunnels": [...]} (see \
            docs/control-protocol.md). --watch follows state changes live until interrupted.
            With --deep the table also says where the daemon's probes take the gateway token from \
            (--token is not known to the daemon: gateway.remote.token, OPENCLAW_GATEWAY_TOKEN or \
            gateway.auth.token, as the daemon's environment sees them); a gateway answering 401 or \
            403 is "TOKEN REFUSED", never ok.
            Exit status: 0 when every enabled tunnel is up (and, with --deep, its gateway \
            answers), 3 when one is not, 4 with --deep when all are up but a gateway refused the \
            token, 2 when no daemon answers, 1 for an unknown tunnel.
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Print JSON (the status contract) instead of a table.")
    var json = false

    @Flag(name: .long, help: "Follow changes live (one JSON line per event with --json).")
    var watch = false

    @Flag(name: .long, help: "Probe the service behind every tunnel now, through the tunnel.")
    var deep = false

    @Argument(help: "Only this tunnel.")
    var tunnel: String?

    func run() throws {
        if watch { try follow() }
        var path = tunnel.map { "/v1/tunnels/\(pathComponent($0))" } ?? "/v1/status"
        if deep { path += "?deep=1" }
        // A plain status is a snapshot (answered at once); --deep waits for the probes (≤ 15 s).
        let report = try call(
            global, "GET", path, as: StatusReport.self, timeout: deep ? 30 : ControlClient.defaultTimeout)
        if json {
            let data = try ControlProtocol.encoder().encode(report)
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(StatusTable.render(report.tunnels, now: Date(), deep: deep), terminator: "")
        }
        if !report.tunnels.allSatisfy(\.isHealthy) { throw ExitCode(ControlExit.notUp) }
        let failing = report.tunnels.filter { $0.enabled && $0.gateway?.ok == false }
        if deep && !failing.isEmpty {
            throw ExitCode(
                failing.allSatisfy { $0.gateway?.tokenRefused == true } ? ControlExit.tokenRefused : ControlExit.notUp)
        }
    }

    private func follow() throws -> Never {
        let client = ControlClient(path: global.socketPath)
        var tunnels: [TunnelStatus] = []
        let interactive = isatty(STDOUT_FILENO) == 1
        do {
            try client.followEvents { event in
                switch event.event {
                case .snapshot:
                    tunnels = event.tunnels ?? []
                case .tunnel:
                    guard let report = event.tunnel else { return true }
                    if let index = tunnels.firstIndex(where: { $0.name == report.name }) {
                        tunnels[index] = report
                    } else {
                        tunnels.append(report)
                    }
                case .removed:
                    tunnels.removeAll { $0.name == event.name }
                }
                let shown = tunnel.map { name in tunnels.filter { $0.name == name } } ?? tunnels
                if json {
                    if let data = try? ControlProtocol.encoder().encode(event) {
                        print(String(decoding: data, as: UTF8.self))
                    }
                } else if interactive {
                    print("\u{1B}[H\u{1B}[2J" + StatusTable.render(shown, now: Date()), terminator: "")
                } else if event.event == .snapshot {
                    print(StatusTable.render(shown, now: Date()), terminator: "")
                } else if let report = event.tunnel, tunnel == nil || report.name == tunnel {
                    print(StatusTable.eventLine(report, at: event.time))
                } else if event.event == .removed, let name = event.name {
                    print("\(StatusTable.timestamp(event.time)) \(name) removed")
                }
                fflush(nil)
                return true
            }
        } catch {
            printError(error.description)
        }
        throw ExitCode(ControlExit.noDaemon)
    }
}

struct Target: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Point a tunnel at another SSH server, at runtime, and save it in the config.",
        discussion: """
            Make before break: the daemon first proves a session to the new target (resolve, \
            connect, host key, authentication, and a channel opened to the tunnel's remote \
            address), within the tunnel's connect_timeout plus 5 s, while the old session keeps \
            serving. Only then is the new target written to the config file (atomically, same \
            permissions, every other line and comment kept; a tunnel defined with ssh_host gets \
            an explicit target, identity_file and known_hosts), new connections go to the new \
            session, and connections already open keep flowing on the old one until they close \
            or --drain seconds pass (default: the tunnel's drain_timeout, 5 minutes). \
            `ecto-tunnel status` shows the change while it is pre-flighted.
            When the pre-flight fails, nothing changes: the old session keeps serving, the file \
            is untouched, and the answer names the stage that failed and why (for an unknown \
            host key: its fingerprint and how to trust it). --force switches anyway and says so.
            A tunnel that is down (disabled) is switched and saved at once: nothing to prove.
            Exit status: 0 switched (and, unless --no-wait, up on the new target), 1 refused \
            (bad target, pre-flight failed: nothing was changed), 3 forced but not up yet within \
            --wait (it keeps retrying), 2 when no daemon answers.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The tunnel's name.")
    var tunnel: String

    @Argument(help: ArgumentHelp("The new SSH server.", valueName: "[user@]host[:port]"))
    var target: String

    @Option(name: .long, help: ArgumentHelp("Seconds connections on the old session may go on.", valueName: "seconds"))
    var drain: Double?

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the new session.", valueName: "seconds"))
    var wait: Double = 20

    @Flag(name: .long, help: "Return once the target is saved, without waiting for the session.")
    var noWait = false

    @Flag(name: .long, help: "Switch even if the new target fails its pre-flight (the tunnel then retries it).")
    var force = false

    func validate() throws {
        if let drain, drain < 0 { throw ValidationError("--drain must not be negative") }
        if wait < 0 { throw ValidationError("--wait must not be negative") }
    }

    func run() throws {
        let body = try ControlProtocol.encoder().encode(
            TargetRequest(target: target, drainTimeout: drain, force: force ? true : nil))
        // The answer comes once the pre-flight has a verdict (connect_timeout + 5 s at most).
        let result = try call(
            global, "POST", "/v1/tunnels/\(pathComponent(tunnel))/target", body: body, as: ActionReport.self,
            timeout: 600)
        print(result.message)
        guard !noWait, let wanted = result.tunnels.first?.target else { return }
        let start = ContinuousClock.now
        let outcome = try TunnelWait.untilUp(
            target: wanted, stopWhenDisabled: true, timeout: .milliseconds(Int64(wait * 1000))
        ) {
            let report = try call(global, "GET", "/v1/tunnels/\(pathComponent(tunnel))", as: StatusReport.self)
            return report.tunnels.first.map { .status($0) } ?? .gone
        }
        switch outcome {
        case .up(let current):
            let took = start.duration(to: .now)
            var line =
                "\(tunnel): up on \(wanted) (\(fixed(Double(took.components.seconds) + Double(took.components.attoseconds) / 1e18, decimals: 1)) s)"
            let draining = current.draining.reduce(0) { $0 + $1.connections }
            if draining > 0 {
                line += "; \(draining) connection\(draining == 1 ? "" : "s") still finishing on the old session"
            }
            print(line)
        case .failed(let current):
            printError("\(tunnel): failed on \(wanted): \(current.lastError ?? "unknown error")")
            throw ExitCode(ControlExit.refused)
        case .disabled:
            print("\(tunnel) is down (disabled); `ecto-tunnel up \(tunnel)` connects it to \(wanted)")
        case .notUp(let last):
            var line = "\(tunnel): not up on \(wanted) after \(Int(wait)) s"
            if let last {
                line += "; state \(last.state.rawValue)"
                if let error = last.lastError { line += ", last error: \(error)" }
            }
            printError(
                line + ". The tunnel keeps retrying the new target; `ecto-tunnel status \(tunnel)` shows progress.")
            throw ExitCode(ControlExit.notUp)
        }
    }
}

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Enable a tunnel at runtime (listen and connect).",
        discussion: """
            Undoes `down`, and also retries a failed tunnel. Not saved in the config (`enabled = \
            false` there disables it for good). Exit status: 0 done, 1 unknown tunnel, 2 no daemon.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The tunnel's name.") var tunnel: String

    func run() throws {
        let result = try call(global, "POST", "/v1/tunnels/\(pathComponent(tunnel))/up", as: ActionReport.self)
        print(result.message)
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Disable a tunnel at runtime (close its listener, connections and session).",
        discussion: """
            The tunnel shows as `down` until `up` (or a daemon restart). Other tunnels are not \
            touched. Exit status: 0 done, 1 unknown tunnel, 2 no daemon.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The tunnel's name.") var tunnel: String

    func run() throws {
        let result = try call(global, "POST", "/v1/tunnels/\(pathComponent(tunnel))/down", as: ActionReport.self)
        print(result.message)
    }
}

struct Reconnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drop the SSH session and connect again now, skipping backoff.",
        discussion: """
            Without a name: every enabled tunnel. Open forwarded connections of the dropped \
            session are closed; clients waiting for a session are kept. Also retries a failed \
            tunnel (after you fixed known_hosts or the key, say).
            Exit status: 0 done, 1 unknown tunnel, 2 no daemon.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The tunnel's name (default: all).") var tunnel: String?

    func run() throws {
        let path = tunnel.map { "/v1/tunnels/\(pathComponent($0))/reconnect" } ?? "/v1/reconnect"
        let result = try call(global, "POST", path, as: ActionReport.self)
        print(result.message)
    }
}

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the daemon re-read its config file (like SIGHUP).",
        discussion: """
            A config with errors is refused with every error (file:line and key) and the running \
            state is kept. A good one is applied as a difference: new tunnels start, removed ones \
            stop, unchanged ones are not touched, and each changed one is pre-flighted first (a \
            session with the new settings must connect, pass the host key check, authenticate \
            and open a channel to its remote address) while its old session keeps serving; only \
            then does it switch (open connections finish on the old session, up to \
            drain_timeout). A changed tunnel whose pre-flight fails keeps its running settings \
            and is listed with the stage that failed; the others are applied regardless. \
            --force applies failing ones too.
            Exit status: 0 applied, 1 refused or some change failed its pre-flight, 2 no daemon.
            """)

    @OptionGroup var global: GlobalOptions

    @Flag(name: .long, help: "Apply changed tunnels even if their pre-flight fails.")
    var force = false

    func run() throws {
        let body = force ? try ControlProtocol.encoder().encode(ReloadRequest(force: true)) : nil
        let result = try call(global, "POST", "/v1/reload", body: body, as: ReloadReport.self, timeout: 600)
        var parts: [String] = []
        if !result.added.isEmpty { parts.append("added " + result.added.joined(separator: ", ")) }
        if !result.changed.isEmpty { parts.append("changed " + result.changed.joined(separator: ", ")) }
        if !result.removed.isEmpty { parts.append("removed " + result.removed.joined(separator: ", ")) }
        parts.append("\(result.unchanged.count) unchanged")
        if !result.failed.isEmpty { parts.append("not changed " + result.failed.map(\.tunnel).joined(separator: ", ")) }
        print("reloaded \(result.config): " + parts.joined(separator: "; "))
        for forced in result.forced {
            print("forced \(forced.tunnel): applied although its pre-flight failed at \(forced.stage): \(forced.error)")
        }
        for warning in result.warnings { print("warning: \(warning)") }
        for failure in result.failed {
            printError(
                "\(failure.tunnel): not changed, pre-flight failed at \(failure.stage): \(failure.error) (it keeps its running settings; --force applies it anyway)"
            )
        }
        if !result.failed.isEmpty { throw ExitCode(ControlExit.refused) }
    }
}

/// The human status table.
enum StatusTable {
    static func render(_ tunnels: [TunnelStatus], now: Date, deep: Bool = false) -> String {
        if tunnels.isEmpty { return "no tunnels configured\n" }
        let header = [
            "TUNNEL", "STATE", "TARGET", "LOCAL → REMOTE", "UPTIME", "CONNS", "IN", "OUT", "RECONN", "GATEWAY",
            "LAST ERROR",
        ]
        var rows: [[String]] = []
        var notes: [Int: [String]] = [:]
        for (index, t) in tunnels.enumerated() {
            let age = duration(now.timeIntervalSince(t.since))
            rows.append([
                t.name, stateCell(t, age: age), t.target,
                t.forwards.count > 1 ? "\(t.forwards.count) forwards:" : "\(t.local) → \(t.remote)",
                t.state == .up ? age : "-", "\(t.connections)", bytes(t.bytesIn), bytes(t.bytesOut), "\(t.reconnects)",
                gateway(t),
                t.lastError ?? "-",
            ])
            // Several forwards: one line each under the tunnel.
            notes[index] = t.forwards.count > 1 ? forwardLines(t.forwards) : []
            notes[index, default: []] += t.draining.map {
                "  ↳ \($0.connections) connection\($0.connections == 1 ? "" : "s") finishing on the old target \($0.target)"
            }
            if let hop = t.hop { notes[index, default: []].append("  ↳ jump host down: \(hop)") }
            if let change = t.change {
                notes[index, default: []].append(
                    "  ↳ changing to \(change.target): pre-flight \(change.stage) (\(duration(now.timeIntervalSince(change.started))))"
                )
            }
        }
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[i] - cell.count))
            }.joined(separator: "  ")
        }
        var out = line(header) + "\n"
        for (index, row) in rows.enumerated() {
            out += line(row) + "\n"
            for note in notes[index] ?? [] { out += note + "\n" }
            if let g = tunnels[index].gateway, tunnels[index].state == .up, !g.ok {
                out += "  ↳ gateway (\(g.probe)): \(g.detail)\n"
            }
            if deep, let g = tunnels[index].gateway, let source = g.tokenSource {
                out +=
                    "  ↳ gateway token: \(source == "none" ? "none found (gateway.remote.token, OPENCLAW_GATEWAY_TOKEN, gateway.auth.token)" : "from \(source)")\n"
            }
        }
        return out
    }

    /// "up" (with "2/3" when not every session is, and "(2/3 listening)" when a forward's port
    /// cannot be opened), "backoff 12s", "backoff (local) 3s" for a retry that waits on this
    /// machine, not the server (busy port, missing key, no descriptors).
    static func stateCell(_ t: TunnelStatus, age: String) -> String {
        switch t.state {
        case .up:
            var cell = t.sessions > 1 ? "up \(t.sessionsUp)/\(t.sessions)" : "up"
            let listening = t.forwards.filter { $0.state == .listening }.count
            if t.forwards.count > 1 && listening < t.forwards.count {
                cell += " (\(listening)/\(t.forwards.count) listening)"
            }
            return cell
        case .backoff where t.retryCause == .local:
            return "backoff (local) \(age)"
        case .connecting, .backoff, .down, .failed:
            return "\(t.state.rawValue) \(age)"
        }
    }

    /// One line per forward: `  ↳ 127.0.0.1:8080 → localhost:80  listening  3 conns  1.2 kB in  300 B out`,
    /// with the reason when it is not listening.
    static func forwardLines(_ forwards: [ForwardStatus]) -> [String] {
        let pairs = forwards.map { "\($0.local) → \($0.remote)" }
        let width = pairs.map(\.count).max() ?? 0
        return zip(forwards, pairs).map { forward, pair in
            var line = "  ↳ " + pair + String(repeating: " ", count: width - pair.count)
            line += "  \(forward.state.rawValue)  \(forward.connections) conn\(forward.connections == 1 ? "" : "s")"
            line += "  \(bytes(forward.bytesIn)) in  \(bytes(forward.bytesOut)) out"
            if let error = forward.lastError { line += "  \(error)" }
            return line
        }
    }

    /// "ok 3.1 ms", "DOWN (closed-by-tunnel)", or "-" when no probe ran.
    static func gateway(_ t: TunnelStatus) -> String {
        guard let g = t.gateway, t.state == .up else { return "-" }
        switch g.outcome {
        case .up: return "ok \(fixed(g.latencyMs, decimals: 1)) ms"
        case .tokenRefused: return "TOKEN REFUSED"
        case .refused, .closedByTunnel, .timeout, .protocolError, .error: return "DOWN (\(g.outcome.rawValue))"
        }
    }

    static func eventLine(_ t: TunnelStatus, at time: Date) -> String {
        var text =
            "\(timestamp(time)) \(t.name) \(t.state.rawValue) \(t.target) conns=\(t.connections) reconnects=\(t.reconnects)"
        if let error = t.lastError, t.state != .up { text += " error=\(error)" }
        if let change = t.change {
            text += " changing-to=\(change.target) preflight=\(change.stage.replacing(" ", with: "-"))"
        }
        return text
    }

    static func timestamp(_ date: Date) -> String {
        date.ISO8601Format()
    }

    static func duration(_ seconds: TimeInterval) -> String {
        let s = max(0, Int(seconds))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60 == 0 ? "" : " \(s % 60)s")" }
        if s < 86400 { return "\(s / 3600)h \(s % 3600 / 60)m" }
        return "\(s / 86400)d \(s % 86400 / 3600)h"
    }

    static func bytes(_ count: UInt64) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(count)
        var unit = 0
        while value >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(count) B" : fixed(value, decimals: value < 10 ? 1 : 0) + " " + units[unit]
    }
}
