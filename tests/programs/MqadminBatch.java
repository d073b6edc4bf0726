// Runs several mqadmin commands in one JVM (a JVM start costs seconds): one
// command per line of stdin, its arguments separated by tabs; each command's
// output is framed by marker lines naming it. Usage (the tools' jars on the
// class path): java -cp JARS MqadminBatch.java NAMESRV < commands
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import org.apache.rocketmq.tools.command.MQAdminStartup;

public class MqadminBatch {
    public static void main(String[] argv) throws Exception {
        String namesrv = argv[0];
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, "UTF-8"));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) {
                continue;
            }
            List<String> args = new ArrayList<>(Arrays.asList(line.split("\t")));
            String name = args.remove(0);
            args.add("-n");
            args.add(namesrv);
            System.out.println("=====BEGIN " + name + "=====");
            MQAdminStartup.main0(args.toArray(new String[0]), null);
            System.out.println();
            System.out.println("=====END " + name + "=====");
            System.out.flush();
        }
        System.exit(0);
    }
}
