<?php

declare(strict_types=1);

// For projects without Composer: `require 'path/to/clients/php/autoload.php';` maps the
// Authz\ namespace onto src/ exactly as composer.json's PSR-4 entry does.
spl_autoload_register(static function (string $class): void {
    $prefix = 'Authz\\';
    if (strncmp($class, $prefix, strlen($prefix)) !== 0) {
        return;
    }
    $file = __DIR__ . '/src/' . str_replace('\\', '/', substr($class, strlen($prefix))) . '.php';
    if (is_file($file)) {
        require $file;
    }
});
