// Starts JMeter with its test-plan (de)serialiser allowed to load JMeter's own plan classes.
//
// Debian's JMeter 2.13 runs on a newer XStream (1.4.18+) that refuses every type it was not told
// about, so JMeter cannot even read a .jmx file. JMeter keeps its two XStream instances in
// org.apache.jmeter.save.SaveService (JMXSAVER for plans, JTLSAVER for results); this launcher
// grants them AnyTypePermission, then hands over to JMeter's usual entry point, NewDriver.
// A current JMeter 5.x configures XStream itself and is run directly (scripts/load.sh).
import java.lang.reflect.Field;
import java.lang.reflect.Method;

public final class PermissiveJMeter {
    public static void main(String[] args) throws Exception {
        // NewDriver's static initialiser builds the class loader over lib/ and lib/ext/.
        Class<?> driver = Class.forName("org.apache.jmeter.NewDriver");
        Field loaderField = driver.getDeclaredField("loader");
        loaderField.setAccessible(true);
        ClassLoader loader = (ClassLoader) loaderField.get(null);
        Thread.currentThread().setContextClassLoader(loader);

        // SaveService reads saveservice.properties when it is first loaded: JMeter's properties
        // must be in place before (JMeter loads them again, the same way, when it starts).
        String home = System.getProperty("jmeter.home", "/usr/share/jmeter");
        Class<?> utils = Class.forName("org.apache.jmeter.util.JMeterUtils", true, loader);
        utils.getMethod("setJMeterHome", String.class).invoke(null, home);
        utils.getMethod("loadJMeterProperties", String.class).invoke(null, home + "/bin/jmeter.properties");

        Class<?> saveService = Class.forName("org.apache.jmeter.save.SaveService", true, loader);
        Class<?> typePermission = Class.forName("com.thoughtworks.xstream.security.TypePermission", true, loader);
        Object any = Class.forName("com.thoughtworks.xstream.security.AnyTypePermission", true, loader)
                .getField("ANY").get(null);
        for (String name : new String[] {"JMXSAVER", "JTLSAVER"}) {
            Field field = saveService.getDeclaredField(name);
            field.setAccessible(true);
            Object xstream = field.get(null);
            Method addPermission = xstream.getClass().getMethod("addPermission", typePermission);
            addPermission.invoke(xstream, any);
        }
        driver.getMethod("main", String[].class).invoke(null, (Object) args);
    }
}
