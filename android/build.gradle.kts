// The Satchel Android library: generated uniffi bindings (src/main/kotlin/org/satchel/core),
// coroutine wrappers (src/main/kotlin/org/satchel/android), the Android Keystore SecretStore
// (src/androidMain), and the Rust .so files built by ../scripts/build-android.sh into
// src/main/jniLibs/<abi>/. JVM unit tests (src/test/kotlin) run against the host .so; on this
// project's CI they are compiled with kotlinc directly (../scripts/test-mobile.sh), since
// the Android SDK is not installed there.
plugins {
    id("com.android.library") version "8.7.3"
    id("org.jetbrains.kotlin.android") version "2.1.0"
}

android {
    namespace = "org.satchel.core"
    compileSdk = 35
    defaultConfig {
        minSdk = 26
        consumerProguardFiles("consumer-rules.pro")
        ndk {
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }
    sourceSets {
        getByName("main") {
            kotlin.srcDirs("src/main/kotlin", "src/androidMain")
            jniLibs.srcDirs("src/main/jniLibs")
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }
    testOptions {
        unitTests.all {
            // JVM tests load the host library: cargo build -p satchel-core (../target/debug).
            it.systemProperty("jna.library.path", file("../target/debug").absolutePath)
            it.systemProperty("satchel.sync.bin", file("../target/debug/satchel-sync").absolutePath)
        }
    }
}

dependencies {
    implementation("net.java.dev.jna:jna:5.13.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.8.1")
    testImplementation("junit:junit:4.13.2")
    testImplementation("net.java.dev.jna:jna:5.13.0")
}
