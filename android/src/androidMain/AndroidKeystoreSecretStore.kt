// The SecretStore over the Android Keystore: every vault key is encrypted
// with an AES-256-GCM key that never leaves the Keystore (StrongBox when the
// device has it) and stored, encrypted, in no-backup app storage.
//
// Android-only (android.security.keystore); compiled by the Gradle build of
// this module (see build.gradle.kts), not by the JVM tests here.
package org.satchel.android

import android.content.Context
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import java.io.File
import java.security.KeyStore
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec
import org.satchel.core.SatchelException
import org.satchel.core.SecretStore

class AndroidKeystoreSecretStore(
    context: Context,
    private val alias: String = "satchel.keystore.wrapping-key",
) : SecretStore {
    // noBackupFilesDir: excluded from Auto Backup and device transfer.
    private val dir = File(context.noBackupFilesDir, "satchel-keys").apply { mkdirs() }

    private fun wrappingKey(): SecretKey {
        val ks = KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
        (ks.getKey(alias, null) as? SecretKey)?.let { return it }
        val generator = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, "AndroidKeyStore")
        val spec = KeyGenParameterSpec.Builder(alias, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
            .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
            .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
            .setKeySize(256)
            .build()
        generator.init(spec)
        return generator.generateKey()
    }

    private fun file(name: String): File {
        require(name.all { it.isLetterOrDigit() || it == '.' || it == '-' || it == '_' }) { "bad item name" }
        return File(dir, name)
    }

    override fun get(name: String): ByteArray? = guard {
        val f = file(name)
        if (!f.exists()) return@guard null
        val bytes = f.readBytes()
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(Cipher.DECRYPT_MODE, wrappingKey(), GCMParameterSpec(128, bytes.copyOfRange(0, 12)))
        cipher.updateAAD(name.toByteArray())
        cipher.doFinal(bytes, 12, bytes.size - 12)
    }

    override fun put(name: String, secret: ByteArray) = guard {
        val cipher = Cipher.getInstance("AES/GCM/NoPadding")
        cipher.init(Cipher.ENCRYPT_MODE, wrappingKey())
        cipher.updateAAD(name.toByteArray())
        val sealed = cipher.iv + cipher.doFinal(secret)
        val tmp = File(dir, "$name.tmp")
        tmp.writeBytes(sealed)
        if (!tmp.renameTo(file(name))) throw IllegalStateException("rename failed")
    }

    override fun delete(name: String) = guard {
        file(name).delete()
        Unit
    }

    // Keystore failures reach the library as the typed Keystore error,
    // described without secret material.
    private inline fun <T> guard(block: () -> T): T = try {
        block()
    } catch (e: SatchelException) {
        throw e
    } catch (e: Exception) {
        throw SatchelException.Keystore(e.javaClass.simpleName)
    }
}
