#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Standard base64 (RFC 4648 §4, alphabet `A–Z a–z 0–9 + /`), as used in OpenSSH public key lines,
/// hashed known_hosts names and the WebSocket handshake: FoundationEssentials' `Data` base64 (the
/// one implementation in the binary), plus the one thing OpenSSH's readers accept that it does
/// not: input without its `=` padding.
enum Base64 {
    static func encode(_ bytes: [UInt8], padding: Bool = true) -> String {
        let text = Data(bytes).base64EncodedString()
        guard !padding else { return text }
        var trimmed = Substring(text)
        while trimmed.hasSuffix("=") { trimmed = trimmed.dropLast() }
        return String(trimmed)
    }

    /// Decodes base64 text. Padding is optional but, if present, must be correct and final; any
    /// character outside the alphabet (blanks included) fails.
    static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var symbols = Array(text)
        let pad = UInt8(ascii: "=")
        if let first = symbols.firstIndex(of: pad) {
            // Foundation's decoder tolerates misplaced padding ("AB=C", "AB==="); OpenSSH does not.
            let padding = symbols.count - first
            guard padding <= 2, symbols.count % 4 == 0, symbols[first...].allSatisfy({ $0 == pad }) else { return nil }
        } else {
            switch symbols.count % 4 {
            case 1: return nil
            case 2: symbols += [UInt8(ascii: "="), UInt8(ascii: "=")]
            case 3: symbols.append(UInt8(ascii: "="))
            default: break
            }
        }
        guard let data = Data(base64Encoded: Data(symbols)) else { return nil }
        return [UInt8](data)
    }

    static func decode(_ text: String) -> [UInt8]? { decode(Array(text.utf8)) }
}
