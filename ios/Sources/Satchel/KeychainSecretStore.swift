// The SecretStore over the iOS Keychain: generic-password items, readable
// only on this device after its first unlock, never synced to iCloud or
// restored onto another device.
import Foundation
import Security
@_exported import SatchelCore

public final class KeychainSecretStore: SecretStore, @unchecked Sendable {
    private let service: String

    public init(service: String = "org.satchel.vault") {
        self.service = service
    }

    private func query(_ name: String) -> [String: Any] {
        [
            kSecClass as String: kSecClassGenericPassword,
            kSecAttrService as String: service,
            kSecAttrAccount as String: name,
            kSecAttrSynchronizable as String: false,
        ]
    }

    public func get(name: String) throws -> Data? {
        var q = query(name)
        q[kSecReturnData as String] = true
        q[kSecMatchLimit as String] = kSecMatchLimitOne
        var out: CFTypeRef?
        let status = SecItemCopyMatching(q as CFDictionary, &out)
        if status == errSecItemNotFound { return nil }
        guard status == errSecSuccess, let data = out as? Data else {
            throw SatchelError.Keystore(reason: "keychain read failed (\(status))")
        }
        return data
    }

    public func put(name: String, secret: Data) throws {
        let status = SecItemUpdate(query(name) as CFDictionary, [kSecValueData as String: secret] as CFDictionary)
        if status == errSecItemNotFound {
            var q = query(name)
            q[kSecValueData as String] = secret
            q[kSecAttrAccessible as String] = kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly
            let added = SecItemAdd(q as CFDictionary, nil)
            guard added == errSecSuccess else {
                throw SatchelError.Keystore(reason: "keychain write failed (\(added))")
            }
        } else if status != errSecSuccess {
            throw SatchelError.Keystore(reason: "keychain write failed (\(status))")
        }
    }

    public func delete(name: String) throws {
        let status = SecItemDelete(query(name) as CFDictionary)
        guard status == errSecSuccess || status == errSecItemNotFound else {
            throw SatchelError.Keystore(reason: "keychain delete failed (\(status))")
        }
    }
}
